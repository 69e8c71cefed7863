"""ember_client: call emberd (ember.v1) from Python with numpy arrays.

    from ember_client import Client
    with Client("127.0.0.1:50051", model="demo") as c:
        y = c.predict([[0.1], [0.5]], seed=1)       # float32 array (2, y_dim)

AsyncClient has the same methods as coroutines. Failed calls raise EmberError (code: the
grpc.StatusCode, details: the message); arguments refused before sending raise InvalidInput,
an EmberError with code INVALID_ARGUMENT. docs/client-python.md in the ember repository has
the whole story.
"""
from ._common import DEFAULT_TIMEOUT, ModelInfo, Mode, Prediction, Sampled
from .aio import AsyncClient
from .client import Client
from .errors import EmberError, InvalidInput

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "DEFAULT_TIMEOUT", "EmberError", "InvalidInput", "ModelInfo", "Mode",
           "Prediction", "Sampled"]
