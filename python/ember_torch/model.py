"""A whole ember model in PyTorch: its networks, normalisation, bounds and options, and the
checkpoint that emberd and `ember predict` load (docs/formats.md).

EmberModel(method, x_dim, y_dim, arch, width, depth, spectral_norm) holds the networks with
ember's tensor names at the top level of its state_dict:

  dfo, langevin  one energy net E(x, y)               proj.weight, blocks.0.0.bias, out.weight ...
  mse            the regressor f(x) (y_dim outputs)   the same names, x-only input
  ardfo          y_dim energy nets, nets.J sees x and y_0..y_J (J = y_dim-1: the whole y)
                                                      nets.0.proj.weight, ..., nets.1.out.bias

An image model (image=(H, W, C); dfo, langevin or mse, as in ember) also holds its encoder
(ember_torch.encoder.Encoder: encoder.conv.L.weight, encoder.conv.L.bias); its x is the
encoder's features (not normalised: x_mean 0, x_std 1) then `extra` vector observations, and
its raw input is (images, extras): model.raw_x(images, extras) encodes them.

The normalisation and bounds are buffers outside the state_dict (so that state_dict() is the
checkpoint's tensors: with spectral normalisation, minus each covered layer's `.weight`, which
save_ember computes as weight_orig / sigma). Everything in it is float32, as in ember.
"""
import json
import math

import numpy as np
import torch
import torch.nn as nn

from . import safetensors
from .encoder import DEFAULT_CONV, Encoder
from .nets import ARCHS, EnergyNet

METHODS = ("dfo", "ardfo", "langevin", "mse")

# ember's limits (lib/include/ember/net.h, model.h), checked here so that a model ember would
# refuse is refused when it is built, not when emberd loads it
MAX_X_DIM, MAX_Y_DIM, MAX_ARDFO_Y_DIM = 65536, 4096, 256
MAX_WIDTH, MAX_DEPTH, MAX_PARAMS = 16384, 256, 1 << 28


def infer_defaults(method):
    """The inference defaults a model of this method gets from `ember train` (EMBER_INFER_DEFAULTS
    changed by ember_train_opts_for_method, lib/src/train.c); keys are the checkpoint's."""
    d = {"infer.samples": 16384, "infer.iters": 3, "infer.sigma": 0.33, "infer.shrink": 0.5,
         "infer.temperature": 1.0}
    if method != "mse":
        d.update({"infer.refine_steps": 0, "infer.refine_lr": 0.05})
    if method == "dfo":
        d["infer.samples"] = 1024
    elif method == "ardfo":
        d["infer.samples"] = 512
    elif method == "langevin":
        d.update({"infer.samples": 64, "infer.again_steps": 0, "infer.again_step": 1e-5,
                  "langevin.steps": 50, "langevin.schedule": "ibc", "langevin.step_init": 0.5,
                  "langevin.step_final": 1e-5, "langevin.gamma": 0.55,
                  "langevin.noise_scale": 1.0, "langevin.delta_max": 0.5,
                  "langevin.penalty_margin": 1.0, "langevin.penalty_weight": 1.0})
    return d


class EmberModel(nn.Module):
    """An ember model: method, shapes, networks, normalisation, bounds, options."""

    def __init__(self, method, x_dim, y_dim, arch="resnet", width=128, depth=2,
                 spectral_norm=False, x_names=None, y_names=None, image=None, conv=DEFAULT_CONV,
                 head="softargmax", extra=0):
        super().__init__()
        if method not in METHODS:
            raise ValueError("method must be one of %s, got %r" % (", ".join(METHODS), method))
        encoder = None
        if image is not None:
            if method == "ardfo":
                raise ValueError("image models are dfo, langevin or mse; ardfo is not supported (as in ember)")
            encoder = Encoder(image, conv, head, extra)
            want = encoder.features + encoder.extra
            if x_dim is None:
                x_dim = want
            elif x_dim != want:
                raise ValueError("an image model's x_dim is its encoder's %d features + %d extras = %d, "
                                 "got %d" % (encoder.features, encoder.extra, want, x_dim))
        elif x_dim is None:
            raise ValueError("x_dim is needed (it is only implied for an image model)")
        if arch not in ARCHS:
            raise ValueError("arch must be resnet or mlp, got %r" % (arch,))
        ymax = MAX_ARDFO_Y_DIM if method == "ardfo" else MAX_Y_DIM
        if not (1 <= x_dim <= MAX_X_DIM and 1 <= y_dim <= ymax):
            raise ValueError("x_dim must be 1..%d and y_dim 1..%d for %s, got %d and %d"
                             % (MAX_X_DIM, ymax, method, x_dim, y_dim))
        if not (1 <= width <= MAX_WIDTH and 1 <= depth <= MAX_DEPTH):
            raise ValueError("width must be 1..%d and depth 1..%d, got %d and %d"
                             % (MAX_WIDTH, MAX_DEPTH, width, depth))
        if spectral_norm and method == "ardfo":
            raise ValueError("spectral normalisation is not available for ardfo models (as in ember)")
        self.method, self.x_dim, self.y_dim = method, int(x_dim), int(y_dim)
        self.arch, self.width, self.depth = arch, int(width), int(depth)
        self.spectral_norm = bool(spectral_norm)
        if method == "ardfo":
            self.nets = nn.ModuleList(EnergyNet(x_dim, j + 1, width, depth, arch) for j in range(y_dim))
        else:
            net = EnergyNet(x_dim, 0 if method == "mse" else y_dim, width, depth, arch,
                            out=y_dim if method == "mse" else 1, spectral_norm=spectral_norm)
            for name, mod in net.named_children():  # ember's names at the top level
                self.add_module(name, mod)
            object.__setattr__(self, "_net", net)
        self.encoder = encoder
        nparams = sum(p.numel() for p in self.parameters())
        if nparams > MAX_PARAMS:
            raise ValueError("%d parameters, more than ember's EMBER_MAX_PARAMS (%d)" % (nparams, MAX_PARAMS))
        for k, n in (("x_mean", x_dim), ("y_mean", y_dim)):
            self.register_buffer(k, torch.zeros(n), persistent=False)
        for k, n in (("x_std", x_dim), ("y_std", y_dim)):
            self.register_buffer(k, torch.ones(n), persistent=False)
        self.register_buffer("y_lo", -torch.ones(y_dim), persistent=False)
        self.register_buffer("y_hi", torch.ones(y_dim), persistent=False)
        self.x_names = list(x_names) if x_names is not None else ["x%d" % i for i in range(x_dim)]
        self.y_names = list(y_names) if y_names is not None else ["y%d" % i for i in range(y_dim)]
        if len(self.x_names) != x_dim or len(self.y_names) != y_dim:
            raise ValueError("x_names and y_names must have x_dim and y_dim names")
        self.options = infer_defaults(method)  # the checkpoint's infer.* and langevin.* keys
        self.train_info = {}                   # its train.* keys (save_ember fills what is missing)

    # ---- networks ------------------------------------------------------------------------

    @property
    def has_images(self):
        return self.encoder is not None

    def raw_x(self, x, extra=None):
        """The network's x in raw units, as a float32 tensor on the model's device: x itself
        (Q, x_dim); for an image model, the encoder's features of images x (Q, H, W, C) uint8
        (differentiable in the encoder's parameters when grad is enabled) followed by extra
        (Q, extra)."""
        dev = next(self.parameters()).device
        if self.encoder is None:
            if extra is not None:
                raise ValueError("extra observations are for image models")
            return torch.as_tensor(x, dtype=torch.float32).to(dev).reshape(-1, self.x_dim)
        f = self.encoder(x)
        k = self.encoder.extra
        if k == 0:
            if extra is not None and np.asarray(extra).size:
                raise ValueError("the model takes no extra observations")
            return f
        if extra is None:
            raise ValueError("the model takes %d extra observations per image (extra=)" % k)
        e = torch.as_tensor(extra, dtype=torch.float32).to(dev).reshape(-1, k)
        if e.shape[0] != f.shape[0]:
            raise ValueError("%d images but %d rows of extras" % (f.shape[0], e.shape[0]))
        return torch.cat([f, e], dim=1)

    def net(self, j=None):
        """The energy net of y-prefix length j (ardfo: 1..y_dim, default y_dim), or the one net."""
        if self.method == "ardfo":
            return self.nets[(self.y_dim if j is None else j) - 1]
        if j not in (None, self.y_dim):
            raise ValueError("only ardfo models have prefix nets")
        return self._net

    def forward(self, xn, yn=None, j=None):
        """In normalised units: energies (Q, S) of candidates yn (Q, S, y_dim or j) for xn
        (Q, x_dim); mse: the normalised prediction (Q, y_dim)."""
        if self.method == "mse":
            return self._net(xn)
        return self.net(j)(xn, yn)

    def energy_and_grad(self, xn, yn, j=None):
        """(E, dE/dy) in normalised units, for candidates yn (Q, S, d)."""
        yn = yn.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            e = self.forward(xn, yn, j)
            (g,) = torch.autograd.grad(e.sum(), yn)
        return e.detach(), g

    # ---- units ---------------------------------------------------------------------------

    def set_stats(self, stats):
        """Sets x_mean, x_std, y_mean, y_std, y_lo, y_hi from a dict (fit_stats's)."""
        for k in ("x_mean", "x_std", "y_mean", "y_std", "y_lo", "y_hi"):
            v = torch.as_tensor(np.asarray(stats[k], dtype=np.float32))
            if v.shape != getattr(self, k).shape:
                raise ValueError("%s has shape %s, the model needs %s" % (k, tuple(v.shape), tuple(getattr(self, k).shape)))
            getattr(self, k).copy_(v)
        return self

    def stats(self):
        return {k: getattr(self, k).detach().cpu().numpy().copy()
                for k in ("x_mean", "x_std", "y_mean", "y_std", "y_lo", "y_hi")}

    def norm_x(self, x):
        return (torch.as_tensor(x, dtype=torch.float32, device=self.x_mean.device) - self.x_mean) / self.x_std

    def norm_y(self, y):
        return (torch.as_tensor(y, dtype=torch.float32) - self.y_mean) / self.y_std

    def denorm_y(self, yn):
        return yn * self.y_std + self.y_mean

    def energy_raw(self, x, y):
        """Energies of raw-unit candidates y (Q, S, y_dim) for raw x (Q, x_dim), as
        ember_infer_energy computes them."""
        with torch.no_grad():
            return self.forward(self.norm_x(x), self.norm_y(y))

    def predict_mse(self, x):
        if self.method != "mse":
            raise ValueError("predict_mse is for mse models")
        with torch.no_grad():
            return self.denorm_y(self._net(self.norm_x(x)))

    # ---- spectral normalisation ----------------------------------------------------------

    def sn_layers(self):
        """(name, SNLinear) of the layers spectral normalisation covers."""
        if not self.spectral_norm:
            return []
        return [(n, l) for n, l in self._net.layers() if hasattr(l, "weight_orig")]

    def sn_power_iteration(self):
        """One power iteration on every covered layer: a training step's start (sn_refresh)."""
        for _, layer in self.sn_layers():
            layer.power_iteration()


# ---- statistics ---------------------------------------------------------------------------

def _mean_std(v):
    """ember's mean_std per column: double sums, population std, float32 results; a column with
    std <= 1e-6 (1 + |mean|) keeps std 1."""
    v64 = v.astype(np.float64)
    mu = v64.sum(axis=0) / v.shape[0]
    sd = np.sqrt(((v64 - mu) ** 2).sum(axis=0) / v.shape[0])
    sd = np.where(sd > 1e-6 * (1.0 + np.abs(mu)), sd, 1.0)
    return mu.astype(np.float32), sd.astype(np.float32)


# ember_train_fit_stats's margins for bound_margin=None (EMBER_BOUND_MARGIN and
# EMBER_IMAGE_BOUND_MARGIN in lib/include/ember/train.h; test_torch checks they agree)
BOUND_MARGIN, IMAGE_BOUND_MARGIN = 0.05, 0.7


def fit_stats(x, y, method="dfo", bound_margin=None, features=0):
    """ember_train_fit_stats (lib/src/train.c): x normalised per column to zero mean, unit
    variance; y the same, with sampling bounds = the normalised y's min/max widened by
    bound_margin x the range per side (None: BOUND_MARGIN, or IMAGE_BOUND_MARGIN for an image
    model; a range under 1e-6 counts as 1); langevin: y min-max to
    [-1, 1], which are its bounds. x (n, x_dim), y (n, y_dim) array-likes, taken as float32.
    An image model (features = its encoder's features > 0): x holds the extras only (n, extra)
    or is None, and the features' columns, first, keep mean 0 and std 1.
    Returns {x_mean, x_std, y_mean, y_std, y_lo, y_hi} as float32 arrays."""
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float32))
    if y.ndim == 1:
        y = y[:, None]
    if x is None:
        x = np.zeros((y.shape[0], 0), dtype=np.float32)
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x[:, None] if x.size or not features else np.zeros((y.shape[0], 0), np.float32)
    if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
        raise ValueError("x and y need the same number (>= 1) of rows, got %d and %d" % (x.shape[0], y.shape[0]))
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    if method not in METHODS:
        raise ValueError("method must be one of %s, got %r" % (", ".join(METHODS), method))
    xm, xs = _mean_std(x)
    if features:
        xm = np.concatenate([np.zeros(features, np.float32), xm]).astype(np.float32)
        xs = np.concatenate([np.ones(features, np.float32), xs]).astype(np.float32)
    f = np.float32
    if method == "langevin":
        lo, hi = y.min(axis=0), y.max(axis=0)
        half = f(0.5) * (hi - lo)
        ym = f(0.5) * (hi + lo)
        ys = np.where(half > f(1e-6) * (f(1.0) + np.abs(ym)), half, f(1.0)).astype(f)
        d = y.shape[1]
        return {"x_mean": xm, "x_std": xs, "y_mean": ym, "y_std": ys,
                "y_lo": -np.ones(d, dtype=f), "y_hi": np.ones(d, dtype=f)}
    ym, ys = _mean_std(y)
    yn = (y - ym) / ys
    lo, hi = yn.min(axis=0), yn.max(axis=0)
    rng = hi - lo
    rng = np.where(rng < f(1e-6), f(1.0), rng).astype(f)
    if bound_margin is None:
        bound_margin = IMAGE_BOUND_MARGIN if features else BOUND_MARGIN
    m = f(bound_margin)
    y_lo, y_hi = (lo - m * rng).astype(f), (hi + m * rng).astype(f)
    bad = ~(y_lo < y_hi)
    y_lo = np.where(bad, lo - f(0.5), y_lo).astype(f)
    y_hi = np.where(bad, hi + f(0.5), y_hi).astype(f)
    return {"x_mean": xm, "x_std": xs, "y_mean": ym, "y_std": ys, "y_lo": y_lo, "y_hi": y_hi}


# ---- checkpoints --------------------------------------------------------------------------

_INT_KEYS = {"infer.samples", "infer.iters", "infer.refine_steps", "infer.again_steps",
             "langevin.steps", "train.steps", "train.seed", "train.batch", "train.negatives",
             "train.val_rows"}


def _fmt(key, v):
    if key == "langevin.schedule":
        if v not in ("ibc", "poly"):
            raise ValueError("langevin.schedule must be ibc or poly, got %r" % (v,))
        return v
    if key in _INT_KEYS:
        if int(v) != v:
            raise ValueError("%s must be an integer, got %r" % (key, v))
        return "%d" % int(v)
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise ValueError("%s must be finite, got %r" % (key, v))
    return "%.9g" % f


def _vec(v):
    return "[" + ",".join("%.9g" % float(a) for a in np.asarray(v, dtype=np.float32)) + "]"


def tensors_of(model):
    """The checkpoint's tensors in ember's file order (lib/src/checkpoint.c, tensor_table)."""
    out = []
    nets = [("nets.%d." % j, n) for j, n in enumerate(model.nets)] if model.method == "ardfo" \
        else [("", model._net)]
    with torch.no_grad():
        for pre, net in nets:
            for name, layer in net.layers():
                out.append((pre + name + ".weight", layer.weight.detach().cpu().numpy()))
                out.append((pre + name + ".bias", layer.bias.detach().cpu().numpy()))
        if model.encoder is not None:  # PyTorch's Conv2d: OIHW
            for i, conv in enumerate(model.encoder.conv):
                out.append(("encoder.conv.%d.weight" % i, conv.weight.detach().cpu().numpy()))
                out.append(("encoder.conv.%d.bias" % i, conv.bias.detach().cpu().numpy()))
        for name, layer in model.sn_layers():
            out.append((name + ".weight_orig", layer.weight_orig.detach().cpu().numpy()))
            out.append((name + ".weight_u", layer.weight_u.detach().cpu().numpy()))
            out.append((name + ".weight_v", layer.weight_v.detach().cpu().numpy()))
    return out


def metadata_of(model, **train_info):
    """The checkpoint's __metadata__ (every key of lib/src/checkpoint.c's meta_keys that the
    model's method has). train_info: train.* values (steps, seed, batch, negatives, lr,
    temperature, loss, ema, prefix_share, prefix_noise), given without the "train." prefix;
    missing ones are 0 (steps, loss) or the method's recipe."""
    m = model
    st = m.stats()
    for k in ("x_std", "y_std"):
        if not (st[k] > 0).all():
            raise ValueError("%s must be > 0, got %s" % (k, st[k]))
    if not (st["y_lo"] < st["y_hi"]).all():
        raise ValueError("y_lo must be below y_hi, got %s and %s" % (st["y_lo"], st["y_hi"]))
    meta = {"format": "ember", "format_version": "1", "method": m.method, "x_dim": str(m.x_dim),
            "y_dim": str(m.y_dim), "arch": m.arch, "width": str(m.width), "depth": str(m.depth)}
    for k in ("x_mean", "x_std", "y_mean", "y_std", "y_lo", "y_hi"):
        meta[k] = _vec(st[k])
    meta["x_names"] = json.dumps(m.x_names, separators=(",", ":"), ensure_ascii=False)
    meta["y_names"] = json.dumps(m.y_names, separators=(",", ":"), ensure_ascii=False)
    info = dict(m.train_info)
    info.update(train_info)
    recipe = {"steps": 0, "seed": 0, "batch": 0, "negatives": 0, "lr": 0.0, "temperature": 1.0,
              "loss": 0.0}
    for k, v in recipe.items():
        meta["train." + k] = _fmt("train." + k, info.get(k, v))
    if m.method == "mse":
        meta["train.negatives"] = "0"
    if float(info.get("ema", 0.0)) > 0:
        meta["train.ema"] = _fmt("train.ema", info["ema"])
    if m.method == "ardfo":
        meta["train.prefix_share"] = _fmt("train.prefix_share", info.get("prefix_share", 0.5))
        meta["train.prefix_noise"] = _fmt("train.prefix_noise", info.get("prefix_noise", 0.3))
    opts = infer_defaults(m.method)
    unknown = set(m.options) - set(opts)
    if unknown:
        raise ValueError("options %s do not belong to a %s model" % (sorted(unknown), m.method))
    opts.update(m.options)
    for k, v in opts.items():
        meta[k] = _fmt(k, v)
    if m.spectral_norm:
        meta["spectral_norm"] = "1"
    if m.encoder is not None:
        meta.update(m.encoder.spec())
    return meta


def save_ember(model, path, **train_info):
    """Writes model as an ember checkpoint that emberd and `ember predict` load, atomically
    (a hidden temporary in the same directory, then rename: safe to write straight into
    emberd's model repository, DIR/<name>/<version>.safetensors). train_info as metadata_of."""
    if not isinstance(model, EmberModel):
        model = getattr(model, "module", model)  # DistributedDataParallel
    tensors = tensors_of(model)
    for name, a in tensors:
        if not np.isfinite(a).all():
            raise ValueError("tensor %s has non-finite values" % name)
    safetensors.write(path, tensors, metadata_of(model, **train_info))


def _num(meta, key, path, kind=float):
    try:
        return kind(meta[key])
    except KeyError:
        raise safetensors.FormatError("%s: metadata has no %s" % (path, key)) from None
    except ValueError:
        raise safetensors.FormatError("%s: metadata %s = %r is not a number" % (path, key, meta[key])) from None


def load_ember(path):
    """An EmberModel (in eval mode) from an ember checkpoint, whoever wrote it: every tensor
    and metadata key. Refuses, naming the problem, files that are not ember checkpoints,
    missing, unknown or misshapen tensors, and (spectral normalisation) a weight that is not
    weight_orig / sigma."""
    tensors, meta = safetensors.read(path)
    if meta.get("format") != "ember":
        raise safetensors.FormatError("%s: not an ember checkpoint (metadata format is %r)" % (path, meta.get("format")))
    if meta.get("format_version") != "1":
        raise safetensors.FormatError("%s: format_version %r; this reads 1" % (path, meta.get("format_version")))
    method, arch = meta.get("method"), meta.get("arch")
    sn = meta.get("spectral_norm") == "1"
    names = {}
    for k in ("x_names", "y_names"):
        if k in meta:
            names[k] = json.loads(meta[k])
    enc_keys = ("encoder.image", "encoder.conv", "encoder.head", "encoder.extra")
    have = [k for k in enc_keys if k in meta]
    if have and len(have) != len(enc_keys):
        raise safetensors.FormatError("%s: an image model's metadata has all of %s; this one has %d of them"
                                      % (path, ", ".join(enc_keys), len(have)))
    if have:
        try:
            image = tuple(int(v) for v in meta["encoder.image"].split("x"))
            names.update(image=image, conv=meta["encoder.conv"], head=meta["encoder.head"],
                         extra=int(meta["encoder.extra"]))
        except ValueError:
            raise safetensors.FormatError("%s: the encoder metadata (image %r, conv %r, head %r, extra %r) is "
                                          "not an encoder ember builds" % ((path,) + tuple(meta[k] for k in enc_keys))) from None
    try:
        m = EmberModel(method, _num(meta, "x_dim", path, int), _num(meta, "y_dim", path, int), arch,
                       _num(meta, "width", path, int), _num(meta, "depth", path, int), sn, **names)
    except ValueError as e:
        raise safetensors.FormatError("%s: %s" % (path, e)) from None
    m.set_stats({k: json.loads(meta[k]) for k in ("x_mean", "x_std", "y_mean", "y_std", "y_lo", "y_hi")})
    want = dict(tensors_of(m))
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    if missing or extra:
        raise safetensors.FormatError("%s: tensors missing %s, unknown %s" % (path, missing, extra))
    for k, a in tensors.items():
        if a.shape != want[k].shape:
            raise safetensors.FormatError("%s: tensor %s has shape %s, expected %s" % (path, k, a.shape, want[k].shape))
    sd = {k: torch.from_numpy(v) for k, v in tensors.items() if k in m.state_dict()}
    m.load_state_dict(sd, strict=True)
    for name, layer in m.sn_layers():
        w = tensors[name + ".weight"]
        got = layer.weight.detach().numpy()
        if np.abs(got - w).max() > 1e-5 * max(1.0, np.abs(w).max()):
            raise safetensors.FormatError("%s: %s.weight is not %s.weight_orig / sigma" % (path, name, name))
    opts = {}
    for k in infer_defaults(method):
        if k in meta:
            opts[k] = meta[k] if k == "langevin.schedule" else (int(meta[k]) if k in _INT_KEYS else float(meta[k]))
    m.options.update(opts)
    m.train_info = {k[6:]: (int(v) if k in _INT_KEYS else float(v)) for k, v in meta.items()
                    if k.startswith("train.")}
    return m.eval()
