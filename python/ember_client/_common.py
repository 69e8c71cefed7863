"""What Client and AsyncClient share: the channel's target, credentials and options, input
checks, requests and the conversion of answers. Nothing here makes a call."""
import ipaddress
import math
import numbers
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import grpc
import numpy as np

from . import _stubs
from .errors import EmberError, InvalidInput

pb = _stubs.pb

DEFAULT_TIMEOUT = 10.0  # seconds: a call's deadline unless the client or the call gives one

# The keepalive emberd accepts (wire/wire.h: EMBER_KEEPALIVE_*; docs/cluster.md).
_KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 20000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", -1),  # answers are as large as the rows asked for
]

_SCHEDULES = {"ibc": pb.LangevinOptions.SCHEDULE_IBC, "poly": pb.LangevinOptions.SCHEDULE_POLY}
_U32 = 2 ** 32 - 1
_U64 = 2 ** 64 - 1

Mode = namedtuple("Mode", "y energy weight")
Mode.__doc__ = "One low-energy answer: y (y_dim,) float32 array, its energy and probability mass."

Prediction = namedtuple("Prediction", "y energy version x_max_abs_z")
Prediction.__doc__ = """Predict's whole answer: y (rows, y_dim), energy (rows,) (0 for explicit
models), the model version that answered, x_max_abs_z (rows,) (how far each x lies from the
training data; None from a server that sends none). For one-row input x (x_dim,), y is (y_dim,)
and energy and x_max_abs_z are floats."""

Sampled = namedtuple("Sampled", "modes samples sample_energy version x_max_abs_z")
Sampled.__doc__ = """Sample's whole answer: modes, one list of Mode per row, lowest energy
first; with return_samples, samples (one (candidates, y_dim) array per row) and sample_energy
(one (candidates,) array per row), else None; the version that answered; x_max_abs_z (rows,).
For one-row input x (x_dim,), modes, samples and sample_energy are that row's and x_max_abs_z
a float."""


@dataclass
class ModelInfo:
    """One model as GetModel describes it (proto/ember/v1/ember.proto: ModelInfo)."""
    name: str
    version: int               # the version described
    versions: List[int]        # every loaded version
    default_version: int       # the one a call with version 0 gets (0: none)
    pinned_version: int        # serving.conf's pin (0: latest)
    method: str                # dfo | ardfo | langevin | mse
    x_dim: int
    y_dim: int
    x_names: List[str]
    y_names: List[str]
    arch: str
    width: int
    depth: int
    y_lo: np.ndarray
    y_hi: np.ndarray
    defaults: Dict[str, Any]   # the inference defaults (InferenceOptions' fields that apply)
    load_errors: List[Dict[str, Any]]
    stats: Dict[str, Any]      # serving counters since emberd started
    proto: Any = field(repr=False, default=None)  # the ModelInfo message itself
    # image models: the encoder, {"shape": {"height", "width", "channels"}, "extra", "conv",
    # "head", "features"} (the images predict/sample take); None for a vector model
    encoder: Optional[Dict[str, Any]] = None


# ---- channel ----------------------------------------------------------------------------------

def _list_item_family(item):
    """4 for "IPv4:PORT", 6 for "[IPv6]:PORT", else 0."""
    if item.startswith("["):
        host, sep, port = item[1:].partition("]:")
        version = 6
    else:
        host, sep, port = item.rpartition(":")
        version = 4
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return 0
    try:
        return version if ipaddress.ip_address(host).version == version else 0
    except ValueError:
        return 0


def channel_target(target):
    """(gRPC target, cluster): a target with a scheme (dns:, ipv4:, ipv6:) as it is; a
    comma-separated list of IPv4:PORT (or [IPv6]:PORT) as gRPC's ipv4: (ipv6:) list; one
    HOST:PORT as it is. Cluster targets (the first two) get the service config."""
    if not isinstance(target, str) or not target.strip():
        raise InvalidInput("target must be a non-empty string such as 127.0.0.1:50051, got %r" % (target,))
    target = target.strip()
    if target.startswith(("dns:", "ipv4:", "ipv6:")):
        return target, True
    if "," not in target:
        return target, False
    items = [s.strip() for s in target.split(",")]
    families = {_list_item_family(s) for s in items}
    if 0 in families or len(families) != 1:
        raise InvalidInput("target %r: several addresses must each be IPv4:PORT, or each [IPv6]:PORT "
                           "(for a name, give dns:///NAME:PORT: it balances over every address NAME has)"
                           % target)
    return ("ipv4:" if families == {4} else "ipv6:") + ",".join(items), True


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput("%s %s: cannot read: %s" % (what, path, e.strerror or e))


def credentials(tls, tls_cert, tls_key):
    """grpc.ChannelCredentials for TLS, or None for plaintext."""
    if (tls_cert is None) != (tls_key is None):
        raise InvalidInput("tls_cert and tls_key go together (a client certificate and its key)")
    if tls is None or tls is False:
        if tls_cert is not None:
            raise InvalidInput("tls_cert/tls_key need TLS: give tls=True or tls=CA_PATH")
        return None
    if tls is True:
        ca = None  # gRPC's default roots
    elif isinstance(tls, (str, bytes)) or hasattr(tls, "__fspath__"):
        ca = _read(tls, "tls CA file")
    else:
        raise InvalidInput("tls must be None, False, True or a CA certificate file path, got %r" % (tls,))
    cert = _read(tls_cert, "tls_cert") if tls_cert is not None else None
    key = _read(tls_key, "tls_key") if tls_key is not None else None
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def metadata(token):
    """The call metadata for a bearer token (None: none)."""
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise InvalidInput("token must be a non-empty string")
    if any(not 0x20 < ord(c) < 0x7f for c in token):
        raise InvalidInput("the token holds a character other than printable ASCII (or a blank)")
    return (("authorization", "Bearer " + token),)


def channel_args(target, tls, tls_cert, tls_key, tls_server_name, options):
    """(target, credentials or None, options list, cluster) for grpc(.aio).*_channel."""
    chan_target, cluster = channel_target(target)
    creds = credentials(tls, tls_cert, tls_key)
    opts = list(_KEEPALIVE_OPTIONS)
    if cluster:
        opts += [("grpc.service_config", _stubs.service_config()), ("grpc.enable_retries", 1)]
    if tls_server_name is not None:
        if creds is None:
            raise InvalidInput("tls_server_name needs TLS")
        opts.append(("grpc.ssl_target_name_override", tls_server_name))
    opts += list(options or ())
    return chan_target, creds, opts, cluster


def check_timeout(timeout, what="timeout"):
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0 \
            or not math.isfinite(timeout):
        raise InvalidInput("%s must be a positive number of seconds, got %r" % (what, timeout))
    return float(timeout)


def rpc_error(e):
    """An EmberError for a grpc.RpcError (or grpc.aio.AioRpcError)."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    details = e.details() if callable(getattr(e, "details", None)) else str(e)
    return EmberError(code or grpc.StatusCode.UNKNOWN, details)


# ---- arguments --------------------------------------------------------------------------------

def as_rows(x):
    """x as a C-contiguous float32 (rows, x_dim) array, and whether it was one row (x_dim,)."""
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise InvalidInput("x must be an array of numbers, (rows, x_dim) or (x_dim,): %s" % e)
    if a.dtype.kind not in "fiu":
        raise InvalidInput("x must hold real numbers, got dtype %s" % a.dtype)
    if a.ndim not in (1, 2):
        raise InvalidInput("x must be (rows, x_dim) or (x_dim,), got shape %s" % (a.shape,))
    one = a.ndim == 1
    a = a.reshape(1, -1) if one else a
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InvalidInput("x is empty (shape %s)" % (a.shape,))
    if a.shape[0] > _U32:
        raise InvalidInput("x has %d rows, more than a request can say" % a.shape[0])
    with np.errstate(over="ignore"):
        f = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(f)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        where = "x[%d]" % j if one else "x[%d, %d]" % (i, j)
        v = a[i, j]
        raise InvalidInput("%s is %r: x must be finite%s" % (
            where, float(v), " float32 values" if np.isfinite(v) else ""))
    return f, one


def as_images(images, x):
    """An image model's input: the images as raw bytes (rows x H x W x C uint8, row-major), their
    ImageShape, the extras x as a flat float32 list (rows x k; None or empty: k = 0), the rows,
    and whether it was one image (H, W, C)."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise InvalidInput("images must be uint8 (rows, height, width, channels) or (height, width, channels), "
                           "got dtype %s" % a.dtype)
    if a.ndim not in (3, 4):
        raise InvalidInput("images must be (rows, height, width, channels) or (height, width, channels), got "
                           "shape %s" % (a.shape,))
    one = a.ndim == 3
    a = a[None] if one else a
    if 0 in a.shape:
        raise InvalidInput("images is empty (shape %s)" % (a.shape,))
    if a.shape[0] > _U32:
        raise InvalidInput("images has %d rows, more than a request can say" % a.shape[0])
    n, h, w, c = a.shape
    extras = []
    if x is not None and np.size(x) > 0:
        e, _ = as_rows(x)
        if e.shape[0] != n:
            raise InvalidInput("x (the extra observations) has %d rows for %d images" % (e.shape[0], n))
        extras = e.ravel().tolist()
    shape = pb.ImageShape(height=h, width=w, channels=c)
    return np.ascontiguousarray(a).tobytes(), shape, extras, n, one


def _input(x, images):
    """(x values, rows, one, images bytes or None, ImageShape or None) of a request's input."""
    if images is not None:
        data, shape, extras, n, one = as_images(images, x)
        return extras, n, one, data, shape
    if x is None:
        raise InvalidInput("x is missing: give x (rows, x_dim), or images for an image model")
    rows, one = as_rows(x)
    return rows.ravel().tolist(), rows.shape[0], one, None, None


def _uint(name, v, lo, hi=_U32):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise InvalidInput("%s must be an integer, got %r" % (name, v))
    if not lo <= int(v) <= hi:
        if lo == 1 and int(v) == 0:
            raise InvalidInput("%s=0 cannot be sent (0 means the model's default in ember.v1; "
                               "pass None for the default)" % name)
        raise InvalidInput("%s must be in [%d, %d], got %d" % (name, lo, hi, int(v)))
    return int(v)


def _real(name, v, nonzero=True):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise InvalidInput("%s must be a finite number, got %r" % (name, v))
    if nonzero and float(np.float32(v)) == 0.0:
        raise InvalidInput("%s=0 cannot be sent (0 means the model's default in ember.v1; "
                           "pass None for the default)" % name)
    return float(v)


def model_name(client_model, model):
    m = model if model is not None else client_model
    if not isinstance(m, str) or not m:
        raise InvalidInput("no model: give model=NAME to the call or to the client")
    return m


def version_arg(version):
    return _uint("version", version, 0, 2 ** 63 - 1)


# InferenceOptions fields: (kind, where 0 is a setting of its own)
_LANGEVIN_FIELDS = {
    "chain_steps": "uint", "schedule": "schedule", "step_init": "real", "step_final": "real",
    "gamma": "real0", "noise_scale": "real0", "delta_max": "real0", "again_steps": "uint0",
    "again_step": "real",
}


def inference_options(seed, samples, iterations, sigma, shrink, temperature, refine_steps, refine_lr, langevin):
    """An InferenceOptions with the given settings; None leaves a field unset (the model's
    default). Values the protocol cannot carry (0 where 0 means "default") are refused."""
    o = pb.InferenceOptions(seed=_uint("seed", seed, 0, _U64))
    if samples is not None:
        o.samples = _uint("samples", samples, 1)
    if iterations is not None:
        o.iterations = _uint("iterations", iterations, 1)
    for name, v in (("sigma", sigma), ("shrink", shrink), ("temperature", temperature), ("refine_lr", refine_lr)):
        if v is not None:
            setattr(o, name, _real(name, v))
    if refine_steps is not None:
        o.refine_steps = _uint("refine_steps", refine_steps, 0)
    if langevin is not None:
        if not isinstance(langevin, dict):
            raise InvalidInput("langevin must be a dict of LangevinOptions fields (%s), got %r"
                               % (", ".join(_LANGEVIN_FIELDS), langevin))
        o.langevin.SetInParent()
        for k, v in langevin.items():
            kind = _LANGEVIN_FIELDS.get(k)
            name = "langevin[%r]" % k
            if kind is None:
                raise InvalidInput("langevin has no option %r (known: %s)" % (k, ", ".join(_LANGEVIN_FIELDS)))
            if v is None:
                continue
            if kind == "schedule":
                if v not in _SCHEDULES:
                    raise InvalidInput("%s must be one of %s, got %r" % (name, ", ".join(_SCHEDULES), v))
                v = _SCHEDULES[v]
            elif kind == "uint":
                v = _uint(name, v, 1)
            elif kind == "uint0":
                v = _uint(name, v, 0)
            else:
                v = _real(name, v, nonzero=(kind == "real"))
            setattr(o.langevin, k, v)
    return o


def predict_request(model, version, x, row_offset, options, images=None):
    values, n, one, data, shape = _input(x, images)
    req = pb.PredictRequest(model=model, version=version_arg(version), x=values, rows=n,
                            row_offset=_uint("row_offset", row_offset, 0, _U64))
    if data is not None:
        req.images = data
        req.image_shape.CopyFrom(shape)
    req.options.CopyFrom(options)
    return req, n, one


def sample_request(model, version, x, row_offset, options, modes, radius, min_mass, polish_steps, return_samples,
                   images=None):
    values, n, one, data, shape = _input(x, images)
    req = pb.SampleRequest(model=model, version=version_arg(version), x=values, rows=n,
                           row_offset=_uint("row_offset", row_offset, 0, _U64),
                           return_samples=bool(return_samples))
    if data is not None:
        req.images = data
        req.image_shape.CopyFrom(shape)
    req.options.CopyFrom(options)
    if modes is not None:
        req.modes = _uint("modes", modes, 1)
    if radius is not None:
        req.radius = _real("radius", radius)
    if min_mass is not None:
        # 0 = keep every mode (as `ember sample --min-mass 0`): the protocol says that with < 0
        req.min_mass = -1.0 if _real("min_mass", min_mass, nonzero=False) == 0 else float(min_mass)
    if polish_steps is not None:
        req.polish_steps = _uint("polish_steps", polish_steps, 0)
    return req, n, one


# ---- answers ------------------------------------------------------------------------------------

def _malformed(what):
    return EmberError(grpc.StatusCode.INTERNAL, "the server's answer is malformed: " + what)


def _z(values, rows):
    if len(values) == 0:
        return None
    if len(values) != rows:
        raise _malformed("%d x_max_abs_z values for %d rows" % (len(values), rows))
    return np.asarray(values, dtype=np.float32)


def prediction(resp, rows, one):
    y_dim = resp.y_dim or (len(resp.y) // rows if rows else 0)
    if y_dim == 0 or len(resp.y) != rows * y_dim:
        raise _malformed("%d y values for %d rows of y_dim %d" % (len(resp.y), rows, y_dim))
    y = np.asarray(resp.y, dtype=np.float32).reshape(rows, y_dim)
    if len(resp.energy) not in (0, rows):
        raise _malformed("%d energies for %d rows" % (len(resp.energy), rows))
    e = np.asarray(resp.energy, dtype=np.float32) if len(resp.energy) else np.zeros(rows, np.float32)
    z = _z(resp.x_max_abs_z, rows)
    if one:
        return Prediction(y[0], float(e[0]), resp.model_version, None if z is None else float(z[0]))
    return Prediction(y, e, resp.model_version, z)


def sampled(resp, rows, one, return_samples):
    if len(resp.rows) != rows:
        raise _malformed("%d rows for %d rows of x" % (len(resp.rows), rows))
    y_dim = resp.y_dim
    modes, samples, energies = [], [], []
    for r in resp.rows:
        row = []
        for m in r.modes:
            if y_dim and len(m.y) != y_dim:
                raise _malformed("a mode with %d y values, y_dim %d" % (len(m.y), y_dim))
            row.append(Mode(np.asarray(m.y, dtype=np.float32), float(m.energy), float(m.weight)))
        modes.append(row)
        if return_samples:
            s = np.asarray(r.samples, dtype=np.float32)
            n = len(r.sample_energy)
            if y_dim == 0 or len(s) != n * y_dim:
                raise _malformed("%d sample values for %d sample energies" % (len(s), n))
            samples.append(s.reshape(n, y_dim))
            energies.append(np.asarray(r.sample_energy, dtype=np.float32))
    z = _z(resp.x_max_abs_z, rows)
    if not return_samples:
        samples = energies = None
    if one:
        return Sampled(modes[0], samples and samples[0], energies and energies[0], resp.model_version,
                       None if z is None else float(z[0]))
    return Sampled(modes, samples, energies, resp.model_version, z)


def message_dict(msg):
    """A message's fields as plain Python values: oneof members and sub-messages only when
    set, enums by their name in lower case without the SCHEDULE_ prefix, maps as dicts."""
    out = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.containing_oneof is not None and not msg.HasField(f.name):
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            out[f.name] = dict(v)
        elif f.label == f.LABEL_REPEATED:
            out[f.name] = [message_dict(m) for m in v] if f.message_type is not None else list(v)
        elif f.message_type is not None:
            if msg.HasField(f.name):
                out[f.name] = message_dict(v)
        elif f.enum_type is not None:
            name = f.enum_type.values_by_number[v].name if v in f.enum_type.values_by_number else str(v)
            out[f.name] = name.lower().replace("schedule_", "")
        else:
            out[f.name] = v
    return out


def model_info(m):
    return ModelInfo(
        name=m.name, version=m.version, versions=list(m.versions), default_version=m.default_version,
        pinned_version=m.pinned_version, method=m.method, x_dim=m.x_dim, y_dim=m.y_dim,
        x_names=list(m.x_names), y_names=list(m.y_names), arch=m.arch, width=m.width, depth=m.depth,
        y_lo=np.asarray(m.y_lo, dtype=np.float32), y_hi=np.asarray(m.y_hi, dtype=np.float32),
        defaults=message_dict(m.defaults), load_errors=[message_dict(e) for e in m.load_errors],
        stats=message_dict(m.stats), proto=m,
        encoder=message_dict(m.encoder) if m.HasField("encoder") else None)


class Base:
    """Arguments, channel settings and request building for both clients."""

    def __init__(self, target, model, token, tls, tls_cert, tls_key, tls_server_name, timeout, options):
        self.target = target
        self.model = model
        self.timeout = check_timeout(timeout)
        self._metadata = metadata(token)
        self._chan = channel_args(target, tls, tls_cert, tls_key, tls_server_name, options)
        self.cluster = self._chan[3]

    def _timeout(self, timeout):
        return self.timeout if timeout is None else check_timeout(timeout)

    def _predict_req(self, x, model, version, seed, samples, iterations, sigma, shrink, temperature,
                     refine_steps, refine_lr, langevin, row_offset, images=None):
        opts = inference_options(seed, samples, iterations, sigma, shrink, temperature, refine_steps,
                                 refine_lr, langevin)
        return predict_request(model_name(self.model, model), version, x, row_offset, opts, images)

    def _sample_req(self, x, model, version, modes, radius, min_mass, polish_steps, return_samples, seed,
                    samples, iterations, sigma, shrink, temperature, langevin, row_offset, images=None):
        opts = inference_options(seed, samples, iterations, sigma, shrink, temperature, None, None, langevin)
        return sample_request(model_name(self.model, model), version, x, row_offset, opts, modes, radius,
                              min_mass, polish_steps, return_samples, images)

    def _info_req(self, model, version):
        return pb.GetModelRequest(model=model_name(self.model, model), version=version_arg(version))
