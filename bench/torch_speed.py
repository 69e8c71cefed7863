#!/usr/bin/python3
"""Training steps per second of ember_torch (PyTorch, CPU) at one of ember's recipes, for the
speed table in docs/torch.md: the same network, batch and counter-examples as `ember bench train
--method M` with the recipe's sizes, on random data of the same shape (x 8, y 2: the particle
task at N = 2).

  OMP_WAIT_POLICY=passive /usr/bin/python3 bench/torch_speed.py --method dfo --threads 2 --steps 20

Prints one key=value line: method, sizes, threads, steps, steps_per_s, pairs_per_s (batch x
candidates x steps/s, as ember's bench). Warm-up steps (--warmup, 3) are not timed.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

import ember_torch as et  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="dfo", choices=["dfo", "ardfo", "langevin", "mse"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    et.set_threads(a.threads)
    o = et.recipe(a.method)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 8)).astype(np.float32)
    y = rng.uniform(size=(4096, 2)).astype(np.float32)
    torch.manual_seed(0)
    m = et.EmberModel(a.method, 8, 2, o["arch"], o["width"], o["depth"])
    m.set_stats(et.fit_stats(x, y, a.method))
    t = et.Trainer(m.to(a.device), x, y, o, device=torch.device(a.device))
    for _ in range(a.warmup):
        t.step()
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        t.step()  # reads the loss back: one synchronisation per step, as a training loop does
    el = time.perf_counter() - t0
    cand = 1 if a.method == "mse" else o["negatives"] + 1 + (o["uniform_negatives"] if a.method == "langevin" else 0)
    print("torch train method=%s width=%d depth=%d batch=%d negatives=%d threads=%d device=%s steps=%d "
          "steps_per_s=%.3f pairs_per_s=%.0f" % (a.method, o["width"], o["depth"], o["batch"], o["negatives"],
                                                   a.threads, a.device, a.steps, a.steps / el,
                                                   o["batch"] * cand * a.steps / el), flush=True)


if __name__ == "__main__":
    main()
