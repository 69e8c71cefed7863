"""Training with ember's recipes in PyTorch (lib/src/train.c, ember/train.h), on any device and,
under torchrun, data-parallel.

  dfo       InfoNCE: each example's true y (index 0) against `negatives` counter-examples
            uniform in the sampling bounds; loss = cross-entropy of softmax(-E / T), mean over
            the batch.
  ardfo     every prefix net j = 1..y_dim trained as dfo on y_1..y_j, its counter-examples
            keeping the true y_1..y_{j-1} (plus N(0, prefix_noise^2)) for a share prefix_share
            of them, with the InfoNCE logits corrected by that proposal's log density
            (train.c, proposal_offsets); the step's loss is the nets' mean.
  langevin  the counter-examples start uniform and move by a Langevin chain (no gradient
            through it), plus `uniform_negatives` unmoved uniform ones; InfoNCE plus the
            gradient penalty weight x mean over the chains' final states of
            max(0, ||dE/dy||_inf - margin)^2 (double backward).
  mse       mean squared error of the regressor in normalised y units.

Image models (dfo, langevin, mse): each step encodes its examples' images with the model's
encoder and the loss's gradient flows back through it (one Adam covers the network and the
encoder, as ember's two Adams with the same schedule do); the weight average covers both.

Adam (0.9, 0.999, eps 1e-8) at lr x lr_decay^(t / decay_steps) (t = steps taken), optional
spectral normalisation (one power iteration per step) and the weights' moving average (ema:
avg <- d avg + (1 - d) w, d = min(ema, (1 + t) / (10 + t)); the trained model gets the average).
Random draws (batches, counter-examples, chain noise) come from torch generators, not ember's
streams: a seed names a run in both, the draws differ.

Data parallel: with torch.distributed initialised (init_distributed(), e.g. under torchrun)
each of the W processes draws batch / W examples from its own stream and the gradients are
averaged by one all-reduce per step: the same expected gradient as one process with the whole
batch, which is what DistributedDataParallel computes.
"""
import math
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .encoder import DEFAULT_CONV
from .model import EmberModel, fit_stats


# ember_train_opts_for_images: image data's recipe for dfo and mse, over the method's
IMAGE_RECIPE = {"width": 64, "steps": 600, "batch": 32, "lr": 0.002, "ema": 0.0}


def recipe(method, images=False, **overrides):
    """ember_train_opts_for_method's recipe for `method` (with images: and
    ember_train_opts_for_images's for image data), with overrides (same names as `ember train`'s
    flags, underscores for dashes). Returns a dict."""
    o = {"method": method, "arch": "resnet", "width": 128, "depth": 2, "steps": 2000, "batch": 512,
         "negatives": 256, "lr": 1e-3, "lr_decay": 0.99, "decay_steps": 100, "temperature": 1.0,
         "bound_margin": None, "ema": 0.999, "spectral_norm": False, "uniform_negatives": 0,
         "chain_steps": 25, "schedule": "ibc", "step_init": 0.1, "step_final": 1e-5, "gamma": 0.55,
         "noise_scale": 1.0, "delta_max": 0.1, "penalty_margin": 1.0, "penalty_weight": 1.0,
         "prefix_share": 0.5, "prefix_noise": 0.3, "conv": DEFAULT_CONV, "head": "softargmax"}
    o.update({"dfo": {"batch": 256, "negatives": 64, "steps": 8000},
              "ardfo": {"batch": 256, "negatives": 64, "steps": 4000},
              "langevin": {"batch": 128, "negatives": 8, "steps": 24000, "step_init": 0.5, "delta_max": 0.5},
              "mse": {"batch": 256, "steps": 8000}}[method])
    if images and method in ("dfo", "mse"):
        o.update(IMAGE_RECIPE)
    unknown = set(overrides) - set(o)
    if unknown:
        raise ValueError("unknown training options %s" % sorted(unknown))
    o.update(overrides)
    return o


def uniform(shape, lo, hi, generator):
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=lo.device)


def infonce(e, temperature):
    """Mean InfoNCE loss of energies e (B, C), the true y at index 0."""
    return F.cross_entropy(-e / temperature, torch.zeros(e.shape[0], dtype=torch.long, device=e.device))


def log_proposal(cands, lo, hi, keep, share, noise):
    """log q(y) of ardfo's counter-example proposal for prefix net j (keep = j - 1 kept
    coordinates): (1 - share) U(box) + share N(prefix; true prefix, noise^2) U(rest)
    (train.c, proposal_offsets). cands (B, C, j), true y at index 0."""
    log_vol = torch.log((hi - lo).double()).sum()
    log_vol_rest = torch.log((hi[keep:] - lo[keep:]).double()).sum()
    c = cands.double()
    inside = ((c >= lo.double()) & (c <= hi.double())).all(dim=-1)
    z2 = ((c[:, :, :keep] - c[:, :1, :keep]) ** 2).sum(dim=-1)
    lu = torch.where(inside, torch.full_like(z2, math.log1p(-share) - float(log_vol)) if share < 1 else
                     torch.full_like(z2, -math.inf), torch.full_like(z2, -math.inf))
    lg = math.log(share) - 0.5 * keep * math.log(2 * math.pi * noise * noise) - 0.5 * z2 / (noise * noise) - log_vol_rest
    return torch.logaddexp(lu, lg)


def dfo_loss(net, xn, yn, lo, hi, o, gen, keep=0):
    """InfoNCE with uniform counter-examples (ardfo: prefix net of len(lo) coordinates with
    `keep` kept ones) for one batch: xn (B, x_dim), yn (B, d) normalised."""
    b, d = yn.shape
    neg = uniform((b, o["negatives"], d), lo, hi, gen)
    kept = int(math.floor(o["prefix_share"] * o["negatives"] + 0.5)) if keep > 0 else 0  # lroundf
    if kept:
        noise = o["prefix_noise"] * torch.randn((b, kept, keep), generator=gen, device=yn.device)
        neg[:, :kept, :keep] = yn[:, None, :keep] + noise
    cands = torch.cat([yn.unsqueeze(1), neg], dim=1)
    e = net(xn, cands)
    if keep > 0 and o["prefix_share"] > 0 and o["prefix_noise"] > 0:
        e = e + (o["temperature"] * log_proposal(cands, lo, hi, keep, o["prefix_share"],
                                                 o["prefix_noise"])).float().detach()
    return infonce(e, o["temperature"])


def chain_opts(o):
    return {"steps": o["chain_steps"], "schedule": o["schedule"], "step_init": o["step_init"],
            "step_final": o["step_final"], "gamma": o["gamma"], "noise_scale": o["noise_scale"],
            "delta_max": o["delta_max"]}


def langevin_chain(net, hx, y, lo, hi, c, gen):
    """Training chain (langevin.c): y (B, M, d) moves c["steps"] steps on E(x, .) with the
    parameters frozen and no graph kept. Returns the final states, detached."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for k in range(1, c["steps"] + 1):
            y = y.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(net.energy(hx, y).sum(), y)
            g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
            if c["schedule"] == "poly":
                lam = c["step_init"] * k ** (-c["gamma"])
                noise = c["noise_scale"] * math.sqrt(2 * lam)
            else:
                t = 1.0 - (k - 1) / c["steps"]
                lam = (c["step_init"] - c["step_final"]) * t * t + c["step_final"]
                noise = c["noise_scale"] * lam
            with torch.no_grad():
                delta = -0.5 * lam * g + noise * torch.randn(g.shape, generator=gen, device=g.device)
                if c["delta_max"] > 0:
                    delta = delta.clamp(-c["delta_max"], c["delta_max"])
                y = torch.max(torch.min(y + delta, hi), lo)
    finally:
        for p in params:
            p.requires_grad_(True)
    return y.detach()


def langevin_loss(net, xn, yn, lo, hi, o, gen):
    """Method C for one batch: chains, then InfoNCE over [true y, chain states, uniform
    extras] plus the gradient penalty on the chain states (train.c, langevin_task)."""
    b, d = yn.shape
    m = o["negatives"]
    hx = net.fuse_x(xn)
    y = langevin_chain(net, hx.detach(), uniform((b, m, d), lo, hi, gen), lo, hi, chain_opts(o), gen)
    parts = [yn.unsqueeze(1), y]
    if o["uniform_negatives"]:
        parts.append(uniform((b, o["uniform_negatives"], d), lo, hi, gen))
    cands = torch.cat(parts, dim=1).requires_grad_(True)
    e = net.energy(hx, cands)
    loss = infonce(e, o["temperature"])
    if o["penalty_weight"] > 0:
        (g,) = torch.autograd.grad(e.sum(), cands, create_graph=True)
        gn = g[:, 1:1 + m].abs().amax(dim=-1)
        loss = loss + o["penalty_weight"] * torch.relu(gn - o["penalty_margin"]).square().mean()
    return loss


def step_loss(model, xn, yn, o, gen):
    """The loss of one (local) batch for model's method; ardfo: the sum over prefix nets (each
    net's gradient is its own loss's) and, separately, their mean for reporting."""
    lo, hi = model.y_lo, model.y_hi
    if model.method == "mse":
        loss = F.mse_loss(model(xn), yn)
    elif model.method == "langevin":
        loss = langevin_loss(model.net(), xn, yn, lo, hi, o, gen)
    elif model.method == "ardfo":
        total = sum(dfo_loss(model.net(j), xn, yn[:, :j].contiguous(), lo[:j], hi[:j], o, gen, keep=j - 1)
                    for j in range(1, model.y_dim + 1))
        return total, total / model.y_dim
    else:
        loss = dfo_loss(model.net(), xn, yn, lo, hi, o, gen)
    return loss, loss


def set_threads(n):
    """torch's intra-op threads and, where torch calls OpenBLAS as a generic BLAS (Debian's
    python3-torch), OpenBLAS's own pool, which torch.set_num_threads does not reach (it stays
    at every core). Set OMP_WAIT_POLICY=passive before torch is imported as well: spinning idle
    OpenMP threads starve OpenBLAS's (bench/torch_reference.py has the measurements)."""
    import ctypes
    torch.set_num_threads(n)
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in os.path.basename(line.rstrip())}
    for lib in sorted(libs):
        fn = getattr(ctypes.CDLL(lib), "openblas_set_num_threads", None)
        if fn:
            fn(n)
            return


def world():
    """(rank, world size): torch.distributed's when it is initialised, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(backend=None):
    """Initialises torch.distributed from torchrun's environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...), if it is there: gloo on CPU, nccl with CUDA. Returns (rank, world,
    device)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    rank, size = world()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, size, torch.device("cuda", local)
    return rank, size, torch.device("cpu")


class Trainer:
    """One training run of model on (x, y) (raw units; the model's stats must be set, e.g.
    from fit_stats). step() takes one optimisation step and returns the whole batch's mean
    loss (all processes'); finish() puts the averaged weights in and records train.* metadata.
    An image model's x is its images (n, H, W, C) uint8, with extra (n, extra) beside them."""

    def __init__(self, model, x, y, opts, seed=0, device=None, extra=None):
        self.model, self.o, self.seed = model, dict(opts), int(seed)
        self.rank, self.world = world()
        if self.o["batch"] % self.world:
            raise ValueError("batch %d does not split over %d processes" % (self.o["batch"], self.world))
        self.local_batch = self.o["batch"] // self.world
        self.device = device or next(model.parameters()).device
        model.to(self.device).train()
        if self.world > 1:  # every process starts from rank 0's weights
            with torch.no_grad():
                for t in list(model.parameters()) + list(model.buffers()):
                    dist.broadcast(t.data, 0)
        if model.has_images:  # images stay uint8; each step encodes its batch
            self.img = torch.as_tensor(np.asarray(x, dtype=np.uint8)).to(self.device)
            if self.img.ndim == 3:
                self.img = self.img.unsqueeze(-1)
            k = model.encoder.extra
            if k and extra is None:
                raise ValueError("the model takes %d extra observations per image (extra=)" % k)
            ex = np.zeros((self.img.shape[0], 0), np.float32) if not k else np.asarray(extra, dtype=np.float32).reshape(-1, k)
            self.exn = ((torch.as_tensor(ex).to(self.device) - model.x_mean[model.encoder.features:])
                        / model.x_std[model.encoder.features:])
            self.xn = None
        else:
            if extra is not None:
                raise ValueError("extra observations are for image models")
            self.xn = model.norm_x(torch.as_tensor(np.asarray(x, dtype=np.float32)).to(self.device)).detach()
        self.yn = model.norm_y(torch.as_tensor(np.asarray(y, dtype=np.float32)).to(self.device)).detach()
        if self.yn.ndim == 1:
            self.yn = self.yn[:, None]
        self.params = [p for p in model.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=self.o["lr"], betas=(0.9, 0.999), eps=1e-8)
        self.avg = [p.detach().clone() for p in self.params] if self.o["ema"] > 0 else None
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(self.seed * 1000003 + self.rank)
        self.t = 0
        self.window = []

    def lr(self):
        o = self.o
        return float(np.float32(o["lr"]) * np.float32(
            math.pow(float(np.float32(o["lr_decay"])), self.t / o["decay_steps"])))

    def step(self):
        m, o = self.model, self.o
        if m.spectral_norm:
            m.sn_power_iteration()
        for g in self.opt.param_groups:
            g["lr"] = self.lr()
        idx = torch.randint(self.yn.shape[0], (self.local_batch,), generator=self.gen, device=self.device)
        if self.xn is None:  # image model: features (with their graph) then the extras
            xn = torch.cat([m.encoder(self.img[idx]), self.exn[idx]], dim=1)
        else:
            xn = self.xn[idx]
        loss, report = step_loss(m, xn, self.yn[idx], o, self.gen)
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        report = report.detach().reshape(1)
        if self.world > 1:  # one all-reduce: every gradient and the loss, averaged
            flat = torch.cat([p.grad.reshape(-1) for p in self.params] + [report])
            dist.all_reduce(flat)
            flat /= self.world
            at = 0
            for p in self.params:
                p.grad.copy_(flat[at:at + p.numel()].view_as(p))
                at += p.numel()
            report = flat[-1:]
        self.opt.step()
        if self.avg is not None:
            d = min(float(np.float32(o["ema"])), float(np.float32((1 + self.t) / (10 + self.t))))
            with torch.no_grad():
                for a, p in zip(self.avg, self.params):
                    a.add_(p.detach() - a, alpha=1.0 - d)
        self.t += 1
        value = float(report)
        if not math.isfinite(value):
            raise FloatingPointError("training diverged at step %d (loss is not finite); try a lower lr" % (self.t - 1))
        self.window.append(value)
        if len(self.window) > 100:
            self.window.pop(0)
        return value

    def swap_average(self):
        if self.avg is None:
            return
        with torch.no_grad():
            for a, p in zip(self.avg, self.params):
                tmp = p.detach().clone()
                p.copy_(a)
                a.copy_(tmp)

    def finish(self):
        """The averaged weights into the model (ema), eval mode, train.* metadata. Returns model."""
        self.swap_average()
        self.avg = None
        o = self.o
        self.model.train_info = {
            "steps": self.t, "seed": self.seed, "batch": o["batch"],
            "negatives": 0 if self.model.method == "mse" else o["negatives"], "lr": o["lr"],
            "temperature": o["temperature"], "loss": sum(self.window) / max(1, len(self.window)),
            "ema": o["ema"]}
        if self.model.method == "ardfo":
            self.model.train_info.update(prefix_share=o["prefix_share"], prefix_noise=o["prefix_noise"])
        if self.model.method == "langevin":
            self.model.options.update({
                "langevin.steps": 2 * o["chain_steps"], "langevin.schedule": o["schedule"],
                "langevin.step_init": o["step_init"], "langevin.step_final": o["step_final"],
                "langevin.gamma": o["gamma"], "langevin.noise_scale": o["noise_scale"],
                "langevin.delta_max": o["delta_max"], "langevin.penalty_margin": o["penalty_margin"],
                "langevin.penalty_weight": o["penalty_weight"]})
        return self.model.eval()


def train(x, y, seed=0, device=None, progress=None, x_names=None, y_names=None, extra=None, **opts):
    """Trains a new model on raw x (n, x_dim), y (n, y_dim) with recipe(method, **opts) (method
    defaults to dfo): fit_stats, weights initialised from torch's RNG seeded with `seed`, then
    opts["steps"] steps. progress(step, loss, trainer) is called after every step. Under
    torch.distributed every process must call it with the same data and options. x as uint8
    images (n, H, W, C) or (n, H, W) makes an image model (conv=, head= as `ember train
    --conv/--head`), with extra (n, k) vector observations beside the images, as ember does for
    an image .npz; image data take image data's recipe where opts do not say otherwise."""
    images = isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim in (3, 4)
    o = recipe(opts.pop("method", "dfo"), images=images, **opts)
    y = np.asarray(y, dtype=np.float32)
    y = y[:, None] if y.ndim == 1 else y
    torch.manual_seed(seed)
    if images:
        img = x if x.ndim == 4 else x[..., None]
        k = 0 if extra is None else np.asarray(extra, dtype=np.float32).reshape(img.shape[0], -1).shape[1]
        model = EmberModel(o["method"], None, y.shape[1], o["arch"], o["width"], o["depth"],
                           o["spectral_norm"], y_names=y_names, image=img.shape[1:],
                           conv=o["conv"], head=o["head"], extra=k)
        ex = None if extra is None else np.asarray(extra, dtype=np.float32).reshape(img.shape[0], k)
        model.set_stats(fit_stats(ex, y, o["method"], o["bound_margin"], features=model.encoder.features))
        t = Trainer(model, img, y, o, seed=seed, device=device, extra=ex)
    else:
        if extra is not None:
            raise ValueError("extra observations are for image data (x as uint8 images)")
        x = np.asarray(x, dtype=np.float32)
        x = x[:, None] if x.ndim == 1 else x
        model = EmberModel(o["method"], x.shape[1], y.shape[1], o["arch"], o["width"], o["depth"],
                           o["spectral_norm"], x_names=x_names, y_names=y_names)
        model.set_stats(fit_stats(x, y, o["method"], o["bound_margin"]))
        t = Trainer(model, x, y, o, seed=seed, device=device)
    for s in range(o["steps"]):
        loss = t.step()
        if progress:
            progress(s + 1, loss, t)
    return t.finish()
