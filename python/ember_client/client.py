"""Client: blocking calls to emberd (ember.v1) over one gRPC channel."""
import grpc

from . import _common
from ._common import DEFAULT_TIMEOUT, pb

_SERVICE = "/ember.v1.Ember/"


def _methods(channel):
    """The four unary methods as multicallables (what generated *_pb2_grpc stubs hold)."""
    def m(name, req, resp):
        return channel.unary_unary(_SERVICE + name, request_serializer=req.SerializeToString,
                                   response_deserializer=resp.FromString)
    return (m("Predict", pb.PredictRequest, pb.PredictResponse),
            m("Sample", pb.SampleRequest, pb.SampleResponse),
            m("ListModels", pb.ListModelsRequest, pb.ListModelsResponse),
            m("GetModel", pb.GetModelRequest, pb.ModelInfo))


class Client(_common.Base):
    """A connection to emberd, or to several replicas.

    target: "HOST:PORT"; "IP:PORT,IP:PORT,..." (IPv4, or [IPv6]:PORT each); or a gRPC target
        with a scheme, e.g. "dns:///ember.example:50051". Lists and scheme targets get
        deploy/grpc/service-config.json: round robin over every address, calls that wait for a
        ready replica and are retried on UNAVAILABLE (within their deadline). One HOST:PORT
        fails fast: an unreachable server is an UNAVAILABLE error at once.
    model: the model calls use when they name none.
    token: a bearer token, sent as `authorization: Bearer TOKEN` on every call.
    tls: None/False plaintext; True TLS with gRPC's default roots; a path: TLS trusting that
        CA certificate file. tls_cert, tls_key: a client certificate and its key (paths).
        tls_server_name: the name to expect in the server's certificate, when the target's
        host is not it (e.g. an IP address).
    timeout: the default deadline of every call, seconds (DEFAULT_TIMEOUT); each call can
        give its own timeout=.
    options: more gRPC channel options, [(key, value), ...].

    Thread-safe: calls from several threads share the channel. Close it with close(), or use
    the client as a context manager. Failed calls raise EmberError (InvalidInput for
    arguments refused before sending).
    """

    def __init__(self, target, model=None, *, token=None, tls=None, tls_cert=None, tls_key=None,
                 tls_server_name=None, timeout=DEFAULT_TIMEOUT, options=None):
        super().__init__(target, model, token, tls, tls_cert, tls_key, tls_server_name, timeout, options)
        chan_target, creds, opts, _ = self._chan
        if creds is None:
            self.channel = grpc.insecure_channel(chan_target, options=opts)
        else:
            self.channel = grpc.secure_channel(chan_target, creds, options=opts)
        self._predict, self._sample, self._list, self._get = _methods(self.channel)

    def _call(self, method, req, timeout):
        try:
            return method(req, timeout=self._timeout(timeout), metadata=self._metadata)
        except grpc.RpcError as e:
            raise _common.rpc_error(e) from None

    def predict(self, x=None, model=None, *, images=None, version=0, seed=0, samples=None, iterations=None,
                sigma=None, shrink=None, temperature=None, refine_steps=None, refine_lr=None, langevin=None,
                row_offset=0, timeout=None):
        """The lowest-energy y for each row of x: a float32 array (rows, y_dim) for x
        (rows, x_dim), or (y_dim,) for one row x (x_dim,). See predict_full for the energies.
        An image model takes images instead (see predict_full)."""
        return self.predict_full(x, model, images=images, version=version, seed=seed, samples=samples,
                                 iterations=iterations, sigma=sigma, shrink=shrink, temperature=temperature,
                                 refine_steps=refine_steps, refine_lr=refine_lr, langevin=langevin,
                                 row_offset=row_offset, timeout=timeout).y

    def predict_full(self, x=None, model=None, *, images=None, version=0, seed=0, samples=None, iterations=None,
                     sigma=None, shrink=None, temperature=None, refine_steps=None, refine_lr=None, langevin=None,
                     row_offset=0, timeout=None):
        """Predict's whole answer as a Prediction(y, energy, version, x_max_abs_z).

        images: an image model's input (ModelInfo.encoder), a uint8 array (rows, height,
        width, channels), or (height, width, channels) for one row, sent as raw bytes; x is
        then each image's extra observations (rows, extra), or None when the model has none.
        version: 0 = the model's default version. seed: the random seed (row i draws from
        stream (seed, row_offset + i), so the answer equals `ember predict --seed` on the same
        rows). samples, iterations, sigma, shrink, temperature, refine_steps, refine_lr: the
        InferenceOptions of proto/ember/v1/ember.proto; None takes the model's default.
        langevin: a dict of LangevinOptions fields (schedule "ibc" or "poly")."""
        req, rows, one = self._predict_req(x, model, version, seed, samples, iterations, sigma, shrink,
                                           temperature, refine_steps, refine_lr, langevin, row_offset, images)
        return _common.prediction(self._call(self._predict, req, timeout), rows, one)

    def sample(self, x=None, model=None, *, images=None, modes=None, radius=None, min_mass=None,
               polish_steps=None, version=0, seed=0, samples=None, iterations=None, sigma=None, shrink=None,
               temperature=None, langevin=None, row_offset=0, timeout=None):
        """Up to `modes` distinct low-energy y per row of x, lowest energy first: a list (one
        per row) of lists of Mode(y, energy, weight); for one row x (x_dim,), that row's list.
        modes, radius, min_mass, polish_steps: as `ember sample` (None: its defaults;
        min_mass=0 keeps every mode). images and inference options as predict_full's."""
        return self.sample_full(x, model, images=images, modes=modes, radius=radius, min_mass=min_mass,
                                polish_steps=polish_steps, version=version, seed=seed, samples=samples,
                                iterations=iterations, sigma=sigma, shrink=shrink, temperature=temperature,
                                langevin=langevin, row_offset=row_offset, timeout=timeout).modes

    def sample_full(self, x=None, model=None, *, images=None, modes=None, radius=None, min_mass=None,
                    polish_steps=None, return_samples=False, version=0, seed=0, samples=None, iterations=None,
                    sigma=None, shrink=None, temperature=None, langevin=None, row_offset=0, timeout=None):
        """Sample's whole answer as a Sampled(modes, samples, sample_energy, version,
        x_max_abs_z); return_samples=True also returns each row's final optimiser population."""
        req, rows, one = self._sample_req(x, model, version, modes, radius, min_mass, polish_steps, return_samples,
                                          seed, samples, iterations, sigma, shrink, temperature, langevin,
                                          row_offset, images)
        return _common.sampled(self._call(self._sample, req, timeout), rows, one, return_samples)

    def models(self, timeout=None):
        """Every model the server knows: a list of ModelInfo."""
        resp = self._call(self._list, pb.ListModelsRequest(), timeout)
        return [_common.model_info(m) for m in resp.models]

    def info(self, model=None, version=0, timeout=None):
        """One model's ModelInfo (version 0: its default version)."""
        return _common.model_info(self._call(self._get, self._info_req(model, version), timeout))

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
