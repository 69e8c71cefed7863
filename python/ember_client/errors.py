"""The exceptions ember_client raises."""
import grpc


class EmberError(Exception):
    """A call that failed: `code` is the grpc.StatusCode (emberd's, or gRPC's own such as
    UNAVAILABLE or DEADLINE_EXCEEDED), `details` the status message. str(e) is
    "CODE_NAME: details"."""

    def __init__(self, code, details):
        self.code = code
        self.details = details or ""
        super().__init__("%s: %s" % (code.name, self.details))

    @property
    def code_name(self):
        """The status code's name, e.g. "NOT_FOUND"."""
        return self.code.name


class InvalidInput(EmberError, ValueError):
    """An argument refused before anything was sent (a bad shape, dtype, value or option).
    Its code is INVALID_ARGUMENT, the code emberd gives the same mistakes, so one
    `except EmberError` handles both; it is also a ValueError."""

    def __init__(self, details):
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, details)
