#!/usr/bin/python3
"""PyTorch reference for ember: the same energy network, IBC DFO inference and InfoNCE training.

ember's C implementation is compared against this script on the same CPU. The network matches
ember/net.h exactly, state_dict names included ("proj.weight", "blocks.0.1.bias", "hidden.0.weight",
"out.bias"), so checkpoints move between the two:

  resnet: proj = Linear(x_dim + y_dim, W) (columns x first, then y); depth/2 blocks, each
          h = h + blocks[b][1](relu(blocks[b][0](relu(h)))); out = Linear(W, 1), no final activation.
  mlp:    hidden.0 = Linear(x_dim + y_dim, W), hidden.i = Linear(W, W) for i < depth, ReLU after
          each; out = Linear(W, 1).

Like ember, the first layer is late-fused: W_x x + b is computed once per query and W_y y is added
for each candidate, so the per-candidate cost excludes the x part.

Threads: --threads N sets torch's intra-op (OpenMP) threads and also OpenBLAS's own pool, which
Debian's python3-torch calls as a generic BLAS and torch.set_num_threads does not reach (without
this, threads=1 ran its GEMMs on every core). OMP_WAIT_POLICY defaults to passive (set it to
override): spinning idle OpenMP threads otherwise starve OpenBLAS's at 2 threads (Langevin
training step 2.1 s instead of 1.0 s, DFO training 61k instead of 84k pairs/s on 2 cores).

Subcommands (each prints one key=value line per configuration; list-valued flags such as
--samples 1024,16384 or --arch resnet,mlp run every combination):

  infer    DFO inference (IBC defaults: sigma 0.33, shrink 0.5, resample with replacement by
           softmax(-E/T), Gaussian noise, clamp to [-1, 1]^y_dim, final pick = argmax probability).
           One timed call runs all --queries queries batched; p50_ms/p90_ms are per call over --reps
           calls after --warmup calls, under torch.inference_mode().
           gflops = queries * iters * samples * 2 * row_macs / p50.
  train    One training step (--method dfo, the default, or langevin), timed over --steps steps
           after --warmup; pairs_per_s = batch * (negatives + 1) * steps_per_s, as in ember.
           dfo: InfoNCE, --batch examples, each with its positive at index 0 and --negatives
           uniform counter-examples, logits = -E/T, cross-entropy against 0, Adam step. Negatives
           are drawn inside the timed step. gflops = 3 * 2 * batch * (negatives + 1) * row_macs
           per step (forward plus ~2x for backward).
           langevin (ember's Method C): each negative starts uniform in [-1, 1]^y_dim and takes
           --chain-steps (25) Langevin steps with IBC's schedule lambda_k = (0.1 - 1e-5)
           (1 - (k-1)/steps)^2 + 1e-5: delta = -0.5 lambda_k dE/dy + lambda_k N(0, 1), clipped
           to [-0.1, 0.1] per component, y clipped to [-1, 1]. dE/dy comes from
           torch.autograd.grad w.r.t. y alone (parameters frozen, no graph kept: stop-gradient
           through the chain). Then one forward over [positive, final negatives] gives the
           InfoNCE loss, and g = dE/dy at the final negatives (create_graph=True) gives the
           gradient penalty mean over negatives of max(0, ||g||_inf - 1)^2 (weight 1), added to
           the loss; backward (double backward through g); Adam step. gflops uses ember's count
           (ember_train_step_flops): 3 * fwd * batch * (negatives + 1) + batch * negatives * fwd
           * (2 * (chain_steps + 1) + 3), fwd = 2 * row_macs.
  fixture  Writes a tiny deterministic reference fixture for ember's tests into directory PATH.

row_macs (multiply-adds per candidate, as ember_net_row_macs) = y_dim*W + (hidden W x W layers)*W*W
+ W, with depth W x W layers for resnet and depth-1 for mlp.

Fixture layout (`fixture PATH`), for arch in {resnet, mlp}, x_dim 3, y_dim 2, width 8, depth 2:
  PATH/<arch>.safetensors  written by hand: 8-byte little-endian header length N, N bytes of JSON
      {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
       "__metadata__": {string: string}} padded with spaces to a multiple of 8, then the raw
      little-endian float32 tensors in state_dict order (weight then bias per layer, no gaps).
      Metadata follows ember/model.h (format=ember, arch, width, identity normalisation, ...).
  PATH/<arch>.csv  header "query,cand,x0,x1,x2,y0,y1,energy,dedy0,dedy1"; 4 queries x 5
      candidates; x ~ N(0,1), y ~ U(-1,1), both float32 values printed with %.9g (exact). energy
      and dE/dy are computed in float64 from the stored float32 weights.

Examples:
  /usr/bin/python3 bench/torch_reference.py infer --samples 1024 --threads 2
  /usr/bin/python3 bench/torch_reference.py infer --samples 1024,16384 --arch resnet,mlp
  /usr/bin/python3 bench/torch_reference.py train --batch 512 --negatives 256 --threads 2
  /usr/bin/python3 bench/torch_reference.py train --method langevin --negatives 16 --threads 1,2
  /usr/bin/python3 bench/torch_reference.py fixture tests/fixtures
"""
import argparse
import ctypes
import itertools
import json
import os
import struct
import sys
import time

# Idle OpenMP threads sleep instead of spinning: Debian's torch runs OpenMP for elementwise ops
# and a separate OpenBLAS thread pool for GEMMs, and spinning OpenMP threads starve OpenBLAS's.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class EnergyNet(nn.Module):
    """E(x, y): pre-activation ResNet MLP or plain MLP with a scalar output, late-fused input."""

    def __init__(self, x_dim, y_dim, width, depth, arch="resnet"):
        super().__init__()
        if arch not in ("resnet", "mlp"):
            raise ValueError(f"arch must be resnet or mlp, got {arch}")
        if arch == "resnet" and (depth < 2 or depth % 2):
            raise ValueError(f"resnet depth must be even and >= 2, got {depth}")
        self.x_dim, self.y_dim, self.width, self.depth, self.arch = x_dim, y_dim, width, depth, arch
        if arch == "resnet":
            self.proj = nn.Linear(x_dim + y_dim, width)
            self.blocks = nn.ModuleList(
                nn.ModuleList([nn.Linear(width, width), nn.Linear(width, width)])
                for _ in range(depth // 2))
        else:
            self.hidden = nn.ModuleList(
                [nn.Linear(x_dim + y_dim, width)] +
                [nn.Linear(width, width) for _ in range(depth - 1)])
        self.out = nn.Linear(width, 1)

    def first(self):
        return self.proj if self.arch == "resnet" else self.hidden[0]

    def fuse_x(self, x):
        """x: (Q, x_dim) -> W_x x + b: (Q, width), computed once per query."""
        layer = self.first()
        return F.linear(x, layer.weight[:, :self.x_dim], layer.bias)

    def energy(self, hx, y):
        """hx: (Q, width) from fuse_x, y: (Q, S, y_dim) -> energies (Q, S)."""
        wy = self.first().weight[:, self.x_dim:].t()  # (y_dim, width)
        # hx + y @ W_y^T as one batched GEMM: several times faster than F.linear for tiny y_dim.
        h = torch.baddbmm(hx.unsqueeze(1), y, wy.expand(y.shape[0], -1, -1))
        if self.arch == "resnet":
            inplace = not torch.is_grad_enabled()  # h is a fresh tensor: safe to update in place
            for l0, l1 in self.blocks:
                r = l1(torch.relu_(l0(torch.relu(h))))
                h = h.add_(r) if inplace else h + r
        else:
            h = torch.relu_(h)
            for layer in self.hidden[1:]:
                h = torch.relu_(layer(h))
        return self.out(h).squeeze(-1)

    def forward(self, x, y):
        return self.energy(self.fuse_x(x), y)

    def row_macs(self):
        hidden = self.depth if self.arch == "resnet" else self.depth - 1
        return self.y_dim * self.width + hidden * self.width * self.width + self.width


def dfo_infer(net, x, samples, iters, temperature=1.0, sigma=0.33, shrink=0.5, lo=-1.0, hi=1.0):
    """IBC derivative-free optimisation. x: (Q, x_dim) -> best y: (Q, y_dim)."""
    q = x.shape[0]
    hx = net.fuse_x(x)
    y = torch.empty(q, samples, net.y_dim).uniform_(lo, hi)
    for i in range(iters):
        probs = torch.softmax(-net.energy(hx, y) / temperature, dim=1)
        if i < iters - 1:
            idx = torch.multinomial(probs, samples, replacement=True)
            y = torch.gather(y, 1, idx.unsqueeze(-1).expand(-1, -1, net.y_dim))
            y = (y + sigma * torch.randn_like(y)).clamp_(lo, hi)
            sigma *= shrink
    best = probs.argmax(dim=1)
    return y[torch.arange(q), best]


def infonce_step(net, opt, x, y_pos, negatives, temperature=1.0, lo=-1.0, hi=1.0):
    """One InfoNCE step. x: (B, x_dim), y_pos: (B, y_dim). Returns the loss."""
    b = x.shape[0]
    neg = torch.empty(b, negatives, net.y_dim).uniform_(lo, hi)
    cands = torch.cat([y_pos.unsqueeze(1), neg], dim=1)  # positive at index 0
    logits = -net(x, cands) / temperature
    loss = F.cross_entropy(logits, torch.zeros(b, dtype=torch.long))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def langevin_step(net, opt, x, y_pos, negatives, chain_steps, temperature=1.0, lo=-1.0, hi=1.0,
                  step_init=0.1, step_final=1e-5, noise_scale=1.0, delta_max=0.1,
                  penalty_margin=1.0, penalty_weight=1.0):
    """One Method C step (ember's langevin_task): Langevin chains move the negatives, then
    InfoNCE plus the gradient penalty at the final negatives. Returns the loss."""
    b = x.shape[0]
    hx = net.fuse_x(x)
    hx_chain = hx.detach()
    y = torch.empty(b, negatives, net.y_dim).uniform_(lo, hi)
    params = list(net.parameters())
    for p in params:  # the chain needs dE/dy only: no graph through the weights
        p.requires_grad_(False)
    try:
        for k in range(1, chain_steps + 1):
            y.requires_grad_(True)
            (g,) = torch.autograd.grad(net.energy(hx_chain, y).sum(), y)
            g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
            t = 1.0 - (k - 1) / chain_steps
            lam = (step_init - step_final) * t * t + step_final
            with torch.no_grad():
                delta = (-0.5 * lam) * g + (noise_scale * lam) * torch.randn_like(g)
                y = (y + delta.clamp_(-delta_max, delta_max)).clamp_(lo, hi)
    finally:
        for p in params:
            p.requires_grad_(True)
    cands = torch.cat([y_pos.unsqueeze(1), y.detach()], dim=1).requires_grad_(True)
    e = net.energy(hx, cands)  # positive at index 0
    loss = F.cross_entropy(-e / temperature, torch.zeros(b, dtype=torch.long))
    if penalty_weight > 0:
        (g,) = torch.autograd.grad(e.sum(), cands, create_graph=True)
        gn = g[:, 1:].abs().amax(dim=-1)  # ||dE/dy||_inf per final negative: (B, M)
        loss = loss + penalty_weight * torch.relu(gn - penalty_margin).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def set_threads(n):
    """torch's intra-op threads and, where torch calls OpenBLAS as a generic BLAS (Debian's
    python3-torch), OpenBLAS's own pool, which torch.set_num_threads leaves at all cores."""
    torch.set_num_threads(n)
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in os.path.basename(line.rstrip())}
    for lib in sorted(libs):
        fn = getattr(ctypes.CDLL(lib), "openblas_set_num_threads", None)
        if fn:
            fn(n)
            return


def configs(args, keys):
    """Every combination of the list-valued flags in keys, as dicts."""
    for values in itertools.product(*(getattr(args, k) for k in keys)):
        yield dict(zip(keys, values))


def fmt(d):
    return " ".join(f"{k}={v}" for k, v in d.items())


def bench_infer(args):
    for c in configs(args, ["arch", "width", "depth", "samples", "queries", "threads"]):
        set_threads(c["threads"])
        torch.manual_seed(args.seed)
        net = EnergyNet(args.x_dim, args.y_dim, c["width"], c["depth"], c["arch"]).eval()
        x = torch.randn(c["queries"], args.x_dim)
        times = []
        with torch.inference_mode():
            for r in range(args.warmup + args.reps):
                t0 = time.perf_counter()
                dfo_infer(net, x, c["samples"], args.iters, args.temperature)
                if r >= args.warmup:
                    times.append(time.perf_counter() - t0)
        p50, p90 = np.percentile(times, [50, 90])
        flops = 2.0 * c["queries"] * args.iters * c["samples"] * net.row_macs()
        print("torch infer " + fmt({
            "x_dim": args.x_dim, "y_dim": args.y_dim, "arch": c["arch"], "width": c["width"],
            "depth": c["depth"], "samples": c["samples"], "iters": args.iters,
            "queries": c["queries"], "threads": c["threads"], "p50_ms": f"{p50 * 1e3:.3f}",
            "p90_ms": f"{p90 * 1e3:.3f}", "gflops": f"{flops / p50 / 1e9:.2f}"}), flush=True)


def bench_train(args):
    for c in configs(args, ["arch", "width", "depth", "batch", "negatives", "threads"]):
        set_threads(c["threads"])
        torch.manual_seed(args.seed)
        net = EnergyNet(args.x_dim, args.y_dim, c["width"], c["depth"], c["arch"]).train()
        opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999))
        x = torch.randn(c["batch"], args.x_dim)
        y = torch.empty(c["batch"], args.y_dim).uniform_(-1.0, 1.0)
        if args.method == "langevin":
            step = lambda: langevin_step(net, opt, x, y, c["negatives"], args.chain_steps,
                                         args.temperature)
        else:
            step = lambda: infonce_step(net, opt, x, y, c["negatives"], args.temperature)
        for _ in range(args.warmup):
            step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        elapsed = time.perf_counter() - t0
        sps = args.steps / elapsed
        pairs = c["batch"] * (c["negatives"] + 1)
        fwd = 2.0 * net.row_macs()
        flops = 3 * fwd * pairs  # as ember_train_step_flops
        extra = {}
        if args.method == "langevin":
            flops += c["batch"] * c["negatives"] * fwd * (2.0 * (args.chain_steps + 1) + 3.0)
            extra = {"chain_steps": args.chain_steps}
        print("torch train " + fmt({
            "method": args.method, **extra, "x_dim": args.x_dim, "y_dim": args.y_dim,
            "arch": c["arch"], "width": c["width"],
            "depth": c["depth"], "batch": c["batch"], "negatives": c["negatives"],
            "steps": args.steps, "threads": c["threads"], "step_ms": f"{1e3 / sps:.2f}",
            "steps_per_s": f"{sps:.3f}", "pairs_per_s": f"{pairs * sps:.0f}",
            "gflops": f"{flops * sps / 1e9:.2f}", "loss": f"{loss.item():.4f}"}), flush=True)


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 ndarray) in file order; metadata: {str: str}."""
    header, offset = {}, 0
    for name, a in tensors:
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header["__metadata__"] = metadata
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())


def export_fixture(args):
    x_dim, y_dim, width, depth, nq, nc = 3, 2, 8, 2, 4, 5
    os.makedirs(args.path, exist_ok=True)
    for arch in ("resnet", "mlp"):
        torch.manual_seed(20240611)
        net = EnergyNet(x_dim, y_dim, width, depth, arch)
        x = torch.randn(nq, x_dim)
        y = torch.empty(nq, nc, y_dim).uniform_(-1.0, 1.0)
        tensors = [(k, v.detach().numpy()) for k, v in net.state_dict().items()]
        meta = {
            "format": "ember", "format_version": "1", "method": "dfo", "x_dim": str(x_dim),
            "y_dim": str(y_dim), "arch": arch, "width": str(width), "depth": str(depth),
            "x_mean": json.dumps([0.0] * x_dim), "x_std": json.dumps([1.0] * x_dim),
            "y_mean": json.dumps([0.0] * y_dim), "y_std": json.dumps([1.0] * y_dim),
            "y_lo": json.dumps([-1.0] * y_dim), "y_hi": json.dumps([1.0] * y_dim),
            "infer.samples": "1024", "infer.iters": "3", "infer.sigma": "0.33",
            "infer.shrink": "0.5", "infer.temperature": "1",
            "train.steps": "0", "train.seed": "20240611", "train.batch": "512",
            "train.negatives": "256", "train.lr": "0.001", "train.temperature": "1",
            "train.loss": "0"}
        write_safetensors(os.path.join(args.path, f"{arch}.safetensors"), tensors, meta)

        net64 = net.double()  # reference values in float64 from the float32 weights
        y64 = y.double().requires_grad_(True)
        e = net64(x.double(), y64)
        (dedy,) = torch.autograd.grad(e.sum(), y64)
        cols = [f"x{i}" for i in range(x_dim)] + [f"y{i}" for i in range(y_dim)]
        cols += ["energy"] + [f"dedy{i}" for i in range(y_dim)]
        with open(os.path.join(args.path, f"{arch}.csv"), "w") as f:
            f.write(",".join(["query", "cand"] + cols) + "\n")
            for qi in range(nq):
                for ci in range(nc):
                    vals = ([float(v) for v in x[qi]] + [float(v) for v in y[qi, ci]] +
                            [e[qi, ci].item()] + [float(v) for v in dedy[qi, ci]])
                    f.write(f"{qi},{ci}," + ",".join(f"{v:.9g}" if i < x_dim + y_dim
                                                     else f"{v:.17g}"
                                                     for i, v in enumerate(vals)) + "\n")
        print(f"torch fixture arch={arch} path={args.path}/{arch}.safetensors "
              f"params={sum(a.size for _, a in tensors)}", flush=True)


def main(argv=None):
    ints = lambda s: [int(v) for v in s.split(",")]
    strs = lambda s: s.split(",")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("infer", "train"):
        s = sub.add_parser(name)
        s.add_argument("--x-dim", type=int, default=8)
        s.add_argument("--y-dim", type=int, default=2)
        s.add_argument("--arch", type=strs, default=["resnet"])
        s.add_argument("--width", type=ints, default=[256])
        s.add_argument("--depth", type=ints, default=[2])
        s.add_argument("--threads", type=ints, default=[2])
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--temperature", type=float, default=1.0)
        if name == "infer":
            s.add_argument("--samples", type=ints, default=[1024])
            s.add_argument("--iters", type=int, default=3)
            s.add_argument("--queries", type=ints, default=[1])
            s.add_argument("--reps", type=int, default=50)
            s.add_argument("--warmup", type=int, default=5)
        else:
            s.add_argument("--batch", type=ints, default=[512])
            s.add_argument("--negatives", type=ints, default=[256])
            s.add_argument("--steps", type=int, default=10)
            s.add_argument("--warmup", type=int, default=3)
            s.add_argument("--lr", type=float, default=1e-3)
            s.add_argument("--method", choices=["dfo", "langevin"], default="dfo")
            s.add_argument("--chain-steps", type=int, default=25,
                           help="langevin: Langevin steps per chain")
    s = sub.add_parser("fixture", help="write the reference fixture into directory PATH")
    s.add_argument("path", metavar="PATH")
    args = p.parse_args(argv)
    {"infer": bench_infer, "train": bench_train, "fixture": export_fixture}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
