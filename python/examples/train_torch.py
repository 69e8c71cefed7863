#!/usr/bin/python3
"""Train an ember model with PyTorch (ember_torch), alone or data-parallel under torchrun, and
write a checkpoint emberd serves. docs/torch.md walks through it.

  /usr/bin/python3 python/examples/train_torch.py --data DEMOS.csv --out DIR/NAME/N.safetensors
  torchrun --nproc_per_node 2 python/examples/train_torch.py --data ... --out ...

DEMOS.csv: comma-separated numbers under a header; the columns marked "y:" are y (as `ember
data particle` writes them), or the last --y-dim columns. The recipe is ember's for --method
(ember_torch.recipe; `ember train --method M --help` prints the same defaults); flags override
it. Under torchrun each process takes batch / processes examples per step and the gradients are
averaged (gloo on CPU, nccl on GPUs); process 0 writes --out, atomically, so it can go straight
into emberd's model repository. Progress (every 10% of the steps) and the final line go to
stderr and stdout from process 0.
"""
import argparse
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np  # noqa: E402
import torch  # noqa: E402

import ember_torch as et  # noqa: E402

torch.set_flush_denormal(True)  # on CPUs: denormals slow long trainings several-fold (docs/torch.md)


def read_data(path, y_dim):
    with open(path) as f:
        header = f.readline().strip().split(",")
        a = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2).astype(np.float32)
    marked = [i for i, h in enumerate(header) if h.startswith("y:")]
    ny = len(marked) if marked else y_dim
    if not ny or ny >= a.shape[1]:
        sys.exit("%s: mark the y columns with y: in the header or give --y-dim" % path)
    names = [h[2:] if h.startswith("y:") else h for h in header]
    return a[:, :-ny], a[:, -ny:], names[:-ny], names[-ny:]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--y-dim", type=int, default=0)
    p.add_argument("--method", default="dfo", choices=["dfo", "ardfo", "langevin", "mse"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    p.add_argument("--samples", type=int, default=0, help="the model's default inference samples (0: the method's)")
    for k, v in et.recipe("dfo").items():
        if k not in ("method",) and not isinstance(v, bool):
            p.add_argument("--" + k.replace("_", "-"), type=type(v), default=None)
    p.add_argument("--spectral-norm", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rank, world, device = et.init_distributed()
    x, y, xn, yn = read_data(a.data, a.y_dim)
    overrides = {k: getattr(a, k) for k in et.recipe(a.method) if getattr(a, k, None) is not None
                 and k != "method"}
    if a.spectral_norm:
        overrides["spectral_norm"] = True
    o = et.recipe(a.method, **overrides)
    if rank == 0:
        print("train_torch: %d rows (x %d, y %d), %s %s %dx%d, %d steps, batch %d over %d process(es), "
              "device %s" % (len(x), x.shape[1], y.shape[1], a.method, o["arch"], o["width"], o["depth"],
                             o["steps"], o["batch"], world, device), file=sys.stderr, flush=True)
    marks = {max(1, round(k * o["steps"] / 10)) for k in range(1, 11)}
    t0 = time.perf_counter()

    def progress(step, loss, trainer):
        if rank == 0 and step in marks:
            el = time.perf_counter() - t0
            print("step %d/%d loss %.4f lr %.3g %.1f steps/s" % (step, o["steps"], loss, trainer.lr(), step / el),
                  file=sys.stderr, flush=True)

    model = et.train(x, y, seed=a.seed, device=device, progress=progress, x_names=xn, y_names=yn,
                     **dict(o, method=a.method))
    wall = time.perf_counter() - t0
    if a.samples:
        model.options["infer.samples"] = a.samples
    if rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        et.save_ember(model.cpu(), a.out)
        print("train_torch: %d steps in %.1f s (%.2f steps/s), loss %.4f; wrote %s"
              % (o["steps"], wall, o["steps"] / wall, model.train_info["loss"], a.out), flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
