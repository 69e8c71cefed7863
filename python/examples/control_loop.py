#!/usr/bin/python3
"""A robot control loop against emberd: one Predict per tick at a fixed rate, then the
end-to-end latency (p50, p99, max) and the missed deadlines.

Each tick t (every 1/hz s, on a fixed schedule from the start) sends one observation x and
waits for the action. The observation moves smoothly: x_j = amplitude * sin(2 pi 0.5 t + j)
for j < x_dim (or --x for a fixed one). A tick's deadline is --deadline-ms after it starts
(default: the period, 1000/hz ms): the call carries it as its gRPC timeout, and a tick whose
answer did not arrive within it (DEADLINE_EXCEEDED or any other failure) is a missed
deadline. When a tick ends after the next one was due, the ticks it overran are skipped (a
controller acts on the newest state, it does not queue old ones) and counted. Latency is
measured around client.predict on time.perf_counter, answers that failed included;
percentiles are nearest-rank. --warmup ticks run first and are not counted (the channel
connects on the first call).

    PYTHONPATH=python python/examples/control_loop.py --target 127.0.0.1:50051 --model demo \\
        --hz 100 --seconds 10

docs/client-python.md runs it and shows its output.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # python/ of a source tree
import numpy as np  # noqa: E402

from ember_client import Client, EmberError  # noqa: E402


def nearest_rank(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="127.0.0.1:50051", help="emberd address, list or dns:/// target")
    ap.add_argument("--model", default="demo", help="model name on the server")
    ap.add_argument("--hz", type=float, default=100.0, help="ticks per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to run (after the warmup)")
    ap.add_argument("--deadline-ms", type=float, default=None, help="each tick's deadline (default: the period)")
    ap.add_argument("--warmup", type=int, default=20, help="ticks run first and not counted")
    ap.add_argument("--x", default=None, help="a fixed observation, comma-separated (default: a moving one)")
    ap.add_argument("--amplitude", type=float, default=0.8, help="the moving observation's amplitude")
    ap.add_argument("--seed", type=int, default=0, help="inference seed")
    ap.add_argument("--samples", type=int, default=None, help="DFO samples (default: the model's)")
    ap.add_argument("--iterations", type=int, default=None, help="DFO iterations (default: the model's)")
    ap.add_argument("--token", default=os.environ.get("EMBER_TOKEN"), help="bearer token (default: $EMBER_TOKEN)")
    ap.add_argument("--tls-ca", default=None, help="CA certificate file: use TLS")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    a = ap.parse_args(argv)
    if not a.hz > 0 or not a.seconds > 0 or a.warmup < 0:
        ap.error("--hz and --seconds must be positive, --warmup >= 0")
    period = 1.0 / a.hz
    deadline = (a.deadline_ms / 1000.0) if a.deadline_ms is not None else period
    if not deadline > 0:
        ap.error("--deadline-ms must be positive")

    with Client(a.target, model=a.model, token=a.token, tls=a.tls_ca, timeout=max(deadline, 1.0)) as client:
        info = client.info(timeout=10.0)
        if a.x is not None:
            fixed = np.array([float(v) for v in a.x.split(",")], dtype=np.float32)
            if fixed.shape != (info.x_dim,):
                ap.error("--x has %d values; %s has x_dim %d" % (fixed.size, a.model, info.x_dim))
        phases = np.arange(info.x_dim, dtype=np.float64)

        def observation(t):
            if a.x is not None:
                return fixed
            return (a.amplitude * np.sin(2 * math.pi * 0.5 * t + phases)).astype(np.float32)

        def act(t):
            return client.predict(observation(t), seed=a.seed, samples=a.samples, iterations=a.iterations,
                                  timeout=deadline)

        for i in range(a.warmup):  # connect and warm up, unmeasured
            try:
                act(i * period)
            except EmberError:
                pass

        latencies, failures, missed, skipped, ticks = [], {}, 0, 0, 0
        n_ticks = max(1, int(round(a.seconds * a.hz)))
        start = time.perf_counter()
        k = 0
        while k < n_ticks:
            due = start + k * period
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            t0 = time.perf_counter()
            ok = True
            try:
                y = act(t0 - start)
                assert y.shape == (info.y_dim,)
            except EmberError as e:
                ok = False
                failures[e.code_name] = failures.get(e.code_name, 0) + 1
            lat = time.perf_counter() - t0
            latencies.append(lat)
            ticks += 1
            if not ok or lat > deadline:
                missed += 1
            # the next tick on the schedule that has not started yet
            nxt = int((time.perf_counter() - start) / period) + 1
            if nxt > k + 1:
                skipped += min(nxt, n_ticks) - (k + 1)
            k = max(k + 1, nxt)
        elapsed = time.perf_counter() - start

    lat_ms = sorted(v * 1000.0 for v in latencies)
    summary = {
        "target": a.target, "model": a.model, "hz": a.hz, "deadline_ms": deadline * 1000.0,
        "ticks": ticks, "skipped_ticks": skipped, "missed_deadlines": missed, "failures": failures,
        "p50_ms": nearest_rank(lat_ms, 50), "p99_ms": nearest_rank(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else float("nan"),
        "achieved_hz": ticks / elapsed if elapsed > 0 else float("nan"),
    }
    if a.json:
        print(json.dumps(summary))
    else:
        print("%d ticks at %g Hz against %s (%s): latency p50 %.3f ms, p99 %.3f ms, max %.3f ms" %
              (ticks, a.hz, a.target, a.model, summary["p50_ms"], summary["p99_ms"], summary["max_ms"]))
        print("deadline %.3f ms: %d missed (%d failed calls%s), %d ticks skipped after overruns" %
              (deadline * 1000.0, missed, sum(failures.values()),
               "".join(", %s %d" % kv for kv in sorted(failures.items())), skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
