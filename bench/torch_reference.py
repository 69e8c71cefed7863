#!/usr/bin/python3
"""PyTorch reference for ember: the same energy network, IBC DFO inference and InfoNCE training.

ember's C implementation is compared against this script on the same CPU. The network, the
training losses, DFO and the safetensors writer are python/ember_torch's (docs/torch.md), imported,
not copied; the network matches ember/net.h exactly, state_dict names included ("proj.weight",
"blocks.0.1.bias", "hidden.0.weight", "out.bias"), so checkpoints move between the two:

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
import itertools
import json
import os
import sys
import time

# Idle OpenMP threads sleep instead of spinning: Debian's torch runs OpenMP for elementwise ops
# and a separate OpenBLAS thread pool for GEMMs, and spinning OpenMP threads starve OpenBLAS's.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ember_torch import safetensors  # noqa: E402
from ember_torch import training  # noqa: E402
from ember_torch.infer import dfo_batched  # noqa: E402
from ember_torch.nets import EnergyNet  # noqa: E402,F401  (torch_particle.py imports it from here)
from ember_torch.training import set_threads  # noqa: E402

BOX = (torch.tensor(-1.0), torch.tensor(1.0))  # the benchmarks draw y in [-1, 1]^y_dim


def dfo_infer(net, x, samples, iters, temperature=1.0, sigma=0.33, shrink=0.5):
    """IBC derivative-free optimisation in the box. x: (Q, x_dim) -> best y: (Q, y_dim)."""
    return dfo_batched(net, x, BOX[0], BOX[1], samples, iters, sigma, shrink, temperature)


def _opts(negatives, temperature, **kw):
    return training.recipe("dfo", negatives=negatives, temperature=temperature, **kw)


def _step(net, opt, loss):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def infonce_step(net, opt, x, y_pos, negatives, temperature=1.0):
    """One InfoNCE step (ember_torch.training.dfo_loss). x: (B, x_dim), y_pos: (B, y_dim)."""
    lo, hi = (b.expand(net.in_y) for b in BOX)
    return _step(net, opt, training.dfo_loss(net, x, y_pos, lo, hi, _opts(negatives, temperature), None))


def langevin_step(net, opt, x, y_pos, negatives, chain_steps, temperature=1.0):
    """One Method C step (ember_torch.training.langevin_loss, ember's defaults otherwise)."""
    lo, hi = (b.expand(net.in_y) for b in BOX)
    o = _opts(negatives, temperature, chain_steps=chain_steps)
    return _step(net, opt, training.langevin_loss(net, x, y_pos, lo, hi, o, None))


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
        safetensors.write(os.path.join(args.path, f"{arch}.safetensors"), tensors, meta)

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
