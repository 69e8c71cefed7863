#!/usr/bin/python3
"""Training steps per second of ember_torch (PyTorch, CPU) at one of ember's recipes, for the
speed table in docs/torch.md: the same network, batch and counter-examples as `ember bench train
--method M` with the recipe's sizes, on random data of the same shape (x 8, y 2: the particle
task at N = 2).

  OMP_WAIT_POLICY=passive /usr/bin/python3 bench/torch_speed.py --method dfo --threads 2 --steps 20

Prints one key=value line: method, sizes, threads, steps, steps_per_s, pairs_per_s (batch x
candidates x steps/s, as ember's bench). Warm-up steps (--warmup, 3) are not timed.

Image models (the counterpart of `ember bench train|infer --image HxWxC --conv --head`):
  --image 64x64x3 [--conv C:K:S[:P],... --head softargmax --batch 32 --negatives 64 --width 128]
      training on random images: steps_per_s and images_per_s (batch x steps/s)
  --image 64x64x3 --infer [--samples 1024 --iters 3 --width 256 --reps 50]
      one query at a time: encode a random image (encode_p50_ms), then DFO on torch's RNG
      (ember_torch.dfo_batched, all in torch); p50_ms of the whole query
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

torch.set_flush_denormal(True)  # on CPUs: denormals slow long trainings several-fold (docs/torch.md)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="dfo", choices=["dfo", "ardfo", "langevin", "mse"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--image", help="HxWxC: an image model on random images")
    p.add_argument("--conv", default=et.encoder.DEFAULT_CONV)
    p.add_argument("--head", default="softargmax")
    p.add_argument("--width", type=int, help="default: the recipe's")
    p.add_argument("--batch", type=int, help="default: the recipe's")
    p.add_argument("--negatives", type=int, help="default: the recipe's")
    p.add_argument("--infer", action="store_true", help="time single queries (encode + DFO), not training")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--reps", type=int, default=50)
    a = p.parse_args()
    et.set_threads(a.threads)
    if a.image:
        return image(a)
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


def image(a):
    h, w, c = (int(v) for v in a.image.split("x"))
    over = {k: getattr(a, k) for k in ("width", "batch", "negatives") if getattr(a, k)}
    o = et.recipe(a.method, **over)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    m = et.EmberModel(a.method, None, 2, o["arch"], o["width"], o["depth"], image=(h, w, c),
                      conv=a.conv, head=a.head).to(dev)
    rng = np.random.default_rng(0)
    tag = "image=%s conv=%s head=%s width=%d depth=%d threads=%d device=%s" % (
        a.image, a.conv, a.head, o["width"], o["depth"], a.threads, a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    if a.infer:
        m.eval()
        img = torch.from_numpy(rng.integers(0, 256, size=(1, h, w, c), dtype=np.uint8)).to(dev)
        net, gen = m.net(), torch.Generator(device=dev).manual_seed(0)
        enc, tot = [], []
        with torch.no_grad():
            for r in range(a.warmup + a.reps):
                t0 = time.perf_counter()
                xn = m.norm_x(m.raw_x(img))
                sync()
                t1 = time.perf_counter()
                et.dfo_batched(net, xn, m.y_lo, m.y_hi, a.samples, a.iters, generator=gen)
                sync()
                t2 = time.perf_counter()
                if r >= a.warmup:
                    enc.append(t1 - t0)
                    tot.append(t2 - t0)
        print("torch infer method=%s %s samples=%d iters=%d encode_p50_ms=%.3f p50_ms=%.3f p90_ms=%.3f"
              % (a.method, tag, a.samples, a.iters, 1e3 * np.median(enc), 1e3 * np.median(tot),
                 1e3 * np.percentile(tot, 90)), flush=True)
        return
    n = 1024
    x = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    y = rng.uniform(size=(n, 2)).astype(np.float32)
    m.set_stats(et.fit_stats(None, y, a.method, features=m.encoder.features))
    t = et.Trainer(m, x, y, o, device=dev)
    for _ in range(a.warmup):
        t.step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        t.step()
    el = time.perf_counter() - t0
    print("torch train method=%s %s batch=%d negatives=%d steps=%d steps_per_s=%.3f images_per_s=%.0f"
          % (a.method, tag, o["batch"], o["negatives"], a.steps, a.steps / el, o["batch"] * a.steps / el), flush=True)


if __name__ == "__main__":
    main()
