"""Inference as ember does it (lib/src/dfo.c, langevin.c, infer.c), drawing from ember's own
random streams (ember_torch.rng), so that for the same seed a PyTorch model's answer is
emberd's Predict answer on its exported checkpoint: the same uniform start, the same
resampling draws and the same noise, with energies from PyTorch. The two differ only where
float32 rounding in the energies (PyTorch's kernels against ember's) flips a choice: a
resampling draw within about 1e-7 of a boundary of the cumulative weights, or two candidates
whose energies tie to that precision at the final pick.

predict(model, x, seed=0, row_offset=0, **options) -> (y (Q, y_dim) raw units, energy (Q,))
  Row i uses stream (seed, row_offset + i), as PredictRequest. options override the model's
  defaults (model.options): samples, iters, sigma, shrink, temperature; langevin models also
  steps, schedule, step_init, step_final, gamma, noise_scale, delta_max, again_steps,
  again_step. Sample-then-refine (infer.refine_steps) is not done here.
"""

import numpy as np
import torch

from .rng import Streams


def _weights_cdf(e, temperature):
    """Per row: cumulative exp(-(E - Emin) / T) in double, non-finite E weighing 0, a row with
    no finite energy uniform (dfo.c, weights_cdf)."""
    e = e.astype(np.float64)
    fin = np.isfinite(e)
    emin = np.where(fin, e, np.inf).min(axis=1, keepdims=True)
    w = np.where(fin, np.exp(-(e - np.where(np.isfinite(emin), emin, 0.0)) * (1.0 / np.float64(np.float32(temperature)))), 0.0)
    none = ~np.isfinite(emin[:, 0])
    w[none] = 1.0
    return np.cumsum(w, axis=1)


def _resample(y, e, rngs, lo, hi, temperature, sigma, coord=None):
    """One resampling step (dfo.c, resample_all with one group): per row, draw n candidates
    (with `coord`: prefixes y[..coord], each candidate keeping its later coordinates) by
    softmax(-E/T) with replacement, add sigma x N(0, 1) to every coordinate (or to `coord`
    only), clip to the bounds. y (Q, n, d) float32 numpy."""
    q, n, d = y.shape
    noise = rngs.normal(n * d if coord is None else n)  # drawn before the resampling draws
    cdf = _weights_cdf(e, temperature)
    total = cdf[:, -1:]
    u = rngs.uniform(n).astype(np.float64) * total  # candidate i's draw, then i + 1's, ...
    src = np.empty((q, n), dtype=np.int64)
    for r in range(q):
        src[r] = np.minimum(np.searchsorted(cdf[r], u[r], side="right"), n - 1)
    yn = np.take_along_axis(y, src[:, :, None], axis=1).copy()
    if coord is not None:  # ardfo resamples the prefix only: each keeps its later coordinates
        yn[:, :, coord + 1:] = y[:, :, coord + 1:]
    s = np.float32(sigma)
    if coord is None:
        yn = yn + s * noise.reshape(q, n, d)
    else:
        yn[:, :, coord] = yn[:, :, coord] + s * noise
    return np.clip(yn, lo, hi).astype(np.float32)


def _uniform_start(rngs, n, lo, hi):
    q, d = len(rngs), lo.shape[0]
    u = rngs.uniform(n * d).reshape(q, n, d)
    return (lo + (hi - lo) * u).astype(np.float32)


def _opts(model, options):
    o = {k.split(".", 1)[1]: v for k, v in model.options.items()}
    for k, v in options.items():
        k = {"iterations": "iters", "chain_steps": "steps"}.get(k, k)
        if k not in o:
            raise ValueError("unknown inference option %r for a %s model" % (k, model.method))
        o[k] = v
    return o


@torch.no_grad()
def dfo(model, xn, rngs, samples, iters, sigma, shrink, temperature):
    """ember_dfo_run (dfo) or ember_ardfo_run (ardfo) in normalised units. xn (Q, x_dim)
    tensor. Returns (best y (Q, d), best energy (Q,), final population (Q, n, d), its
    energies (Q, n)) as numpy float32."""
    lo, hi = model.y_lo.numpy(), model.y_hi.numpy()
    d = model.y_dim
    y = _uniform_start(rngs, samples, lo, hi)
    s = np.float32(sigma)
    if model.method == "ardfo":
        hxs = [model.net(j).fuse_x(xn) for j in range(1, d + 1)]
        for it in range(iters):
            for j in range(1, d + 1):
                e = model.net(j).energy(hxs[j - 1], torch.from_numpy(np.ascontiguousarray(y[:, :, :j]))).numpy()
                if it == iters - 1 and j == d:
                    break
                y = _resample(y, e, rngs, lo, hi, temperature, s, coord=j - 1)
            s = np.float32(s * np.float32(shrink))
    else:
        net = model.net()
        hx = net.fuse_x(xn)
        for it in range(iters):
            e = net.energy(hx, torch.from_numpy(y)).numpy()
            if it == iters - 1:
                break
            y = _resample(y, e, rngs, lo, hi, temperature, s)
            s = np.float32(s * np.float32(shrink))
    best = _argmin(e)
    r = np.arange(y.shape[0])
    return y[r, best], e[r, best], y, e


def _argmin(e):
    """The first lowest finite energy per row (a non-finite one only when nothing is finite)."""
    return np.where(np.isfinite(e), e, np.inf).argmin(axis=1)


def langevin_lambda(o, k):
    """ember_langevin_step: the step at chain step k (1-based)."""
    if o["schedule"] == "poly":
        return np.float32(np.float32(o["step_init"]) * np.float32(k) ** np.float32(-o["gamma"]))
    t = np.float32(1.0) - np.float32(k - 1) / np.float32(o["steps"])
    return np.float32((np.float32(o["step_init"]) - np.float32(o["step_final"])) * t * t + np.float32(o["step_final"]))


def chain(energy_grad, y, rngs, lo, hi, o):
    """ember_langevin_run's steps from states y (Q, n, d) numpy: delta = -lambda/2 dE/dy +
    noise_scale x (ibc: lambda, poly: sqrt(2 lambda)) x N(0, 1), clipped to delta_max, y clipped
    to the bounds. energy_grad(y tensor) -> (E, dE/dy). Returns the final states."""
    q, n, d = y.shape
    for k in range(1, int(o["steps"]) + 1):
        _, g = energy_grad(torch.from_numpy(y))
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0).numpy()
        lam = langevin_lambda(o, k)
        drift = np.float32(0.5) * lam
        noise = np.float32(o["noise_scale"]) * (lam if o["schedule"] == "ibc" else np.sqrt(np.float32(2.0) * lam))
        z = rngs.normal(n * d).reshape(q, n, d)
        delta = (-drift * g + noise * z).astype(np.float32)
        if o["delta_max"] > 0:
            delta = np.clip(delta, -np.float32(o["delta_max"]), np.float32(o["delta_max"]))
        y = np.clip(y + delta, lo, hi).astype(np.float32)
    return y


def langevin(model, xn, rngs, o):
    """Langevin inference (infer.c, dfo_group): `samples` chains per row from uniform starts,
    the model's chain, optionally the second chain at a constant step; the lowest final energy.
    Returns (best y, best energy, final states, their energies) as numpy."""
    lo, hi = model.y_lo.numpy(), model.y_hi.numpy()
    net = model.net()
    hx = net.fuse_x(xn).detach()

    def eg(y):
        y = y.clone().requires_grad_(True)
        with torch.enable_grad():
            e = net.energy(hx, y)
            (g,) = torch.autograd.grad(e.sum(), y)
        return e.detach(), g

    y = _uniform_start(rngs, int(o["samples"]), lo, hi)
    y = chain(eg, y, rngs, lo, hi, o)
    if int(o.get("again_steps", 0)) > 0:
        again = dict(o, schedule="ibc", steps=o["again_steps"], step_init=o["again_step"],
                     step_final=o["again_step"])
        y = chain(eg, y, rngs, lo, hi, again)
    e = eg(torch.from_numpy(y))[0].numpy()
    best = _argmin(e)
    r = np.arange(y.shape[0])
    return y[r, best], e[r, best], y, e


def predict(model, x, seed=0, row_offset=0, return_population=False, extra=None, **options):
    """emberd's Predict for a PyTorch model: (y (Q, y_dim), energy (Q,)) in raw y units, as
    float32 numpy. mse models: the regressor's output and energy 0. With return_population:
    also the final population (Q, samples, y_dim, normalised units) and its energies. An image
    model takes images x (Q, H, W, C) uint8 and its extras (Q, extra), as `ember predict` on an
    image .npz."""
    model = getattr(model, "module", model)
    with torch.no_grad():
        x = model.raw_x(x if model.has_images else np.asarray(x, dtype=np.float32), extra).cpu().numpy()
    q = x.shape[0]
    if model.method == "mse":
        y = model.predict_mse(torch.from_numpy(x)).numpy()
        return (y, np.zeros(q, dtype=np.float32)) + ((None, None) if return_population else ())
    o = _opts(model, options)
    rngs = Streams(seed, [row_offset + i for i in range(q)])
    with torch.no_grad():
        xn = model.norm_x(torch.from_numpy(x))
    if model.method == "langevin":
        yb, eb, pop, pe = langevin(model, xn, rngs, o)
    else:
        yb, eb, pop, pe = dfo(model, xn, rngs, int(o["samples"]), int(o["iters"]), o["sigma"],
                              o["shrink"], o["temperature"])
    y = (yb * model.y_std.numpy() + model.y_mean.numpy()).astype(np.float32)
    return (y, eb) + ((pop, pe) if return_population else ())


def dfo_batched(net, xn, lo, hi, samples, iters, sigma=0.33, shrink=0.5, temperature=1.0,
                generator=None):
    """IBC's DFO on torch's RNG, all on xn's device (for fast closed-loop evaluation, on a GPU
    too): the algorithm of dfo() without ember's streams. net: an EnergyNet (model.net()), xn
    (Q, x_dim) normalised, lo and hi the bounds (model.y_lo, model.y_hi, or scalars). Returns the
    best y (Q, in_y), normalised."""
    q, d = xn.shape[0], net.in_y
    lo = torch.as_tensor(lo, dtype=xn.dtype, device=xn.device).expand(d)
    hi = torch.as_tensor(hi, dtype=xn.dtype, device=xn.device).expand(d)
    with torch.no_grad():
        hx = net.fuse_x(xn)
        y = lo + (hi - lo) * torch.rand(q, samples, d, generator=generator, device=xn.device)
        s = sigma
        for it in range(iters):
            e = net.energy(hx, y)
            if it == iters - 1:
                break
            probs = torch.softmax(-e / temperature, dim=1)
            idx = torch.multinomial(probs, samples, replacement=True, generator=generator)
            y = torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, d))
            y = y + s * torch.randn(y.shape, generator=generator, device=y.device)
            y = torch.max(torch.min(y, hi), lo)
            s *= shrink
        return y[torch.arange(q), e.argmin(dim=1)]
