#!/usr/bin/python3
"""bench/serve.py - emberd against the library, and against an independent load tool, in one run.

    make build && /usr/bin/python3 bench/serve.py [--runs N] [--out FILE.md] [--duration S] [--split 0|1]

Everything on this machine, in this order, one measurement at a time:
  1. a 256x2 ResNet energy model, x_dim 8, y_dim 2 (`ember train`, 5 steps on random data: the
     weights do not change the cost), put in a model repository;
  2. emberd on a free loopback port (--workers: online CPUs, every other flag its default,
     unless --split 0 turns --split-batches off), with its metrics endpoint;
  3. `ember bench serve --local MODEL` for 1 stream at 64 x 3 and 1024 x 3: the server's latency
     and the library's own p50 for the same requests, measured in the same process just before
     (server_overhead = server p50 / library p50), and the server's per-stage time per call
     from /metrics (ember_request_stage_seconds_total) over the same window;
  4. 64 streams, closed loop (`ember bench serve --streams 64`), both sizes;
  5. the same loads from h2load (nghttp2-client; 1 connection x 1 stream after step 3's rows,
     and 4 connections x 16 streams after step 4's; POSTs of a framed PredictRequest built here;
     p50 and p99 from its per-request log), checked against emberd's own count of OK answers;
  6. open loop at half of the closed-loop capacity measured in step 4 (`--rate`), both sizes,
     with the bucket bound emberd's own p99 lies under (ember_request_seconds, from its gRPC
     thread's arrival to the answer handed back): what the server did, without the client's share;
     and the library alone at the same rate, measured by `--local` just before each (its p50
     and p99 in an open loop of its own, in the load generator's process, emberd idle): the
     tail this machine gives a query with no server at all.
Steps 3-6 are one run; --runs N measures N runs one after another against the same emberd.
Prints a markdown table per run, then the serving targets (TARGETS below) with each run's
value and how many runs met each (and writes it all to --out). Needs `deploy/install-deps.sh --bench` for
h2load and python3-grpc-tools (the request body is encoded with stubs generated here).
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["cq_to_loop", "decode", "queue", "compute", "to_loop", "reply"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'ember_request_stage_seconds_total\{stage="(\w+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
        m = re.match(r"ember_staged_requests_total (\S+)", line)
        if m:
            out["calls"] = float(m.group(1))
        m = re.match(r'ember_requests_total\{method="Predict",model="ibc",code="OK"\} (\S+)', line)
        if m:
            out["ok"] = float(m.group(1))
        m = re.match(r'ember_request_seconds_bucket\{model="ibc",le="([^"]+)"\} (\S+)', line)
        if m:
            out.setdefault("request_le", []).append((float(m.group(1)), float(m.group(2))))
    return out


def server_p99_ms(m0, m1):
    """The bucket bound emberd's own p99 lies under (ember_request_seconds between two scrapes),
    or None for an emberd without that histogram."""
    if "request_le" not in m1:
        return None
    before = dict(m0.get("request_le", []))
    cum = [(le, n - before.get(le, 0.0)) for le, n in m1["request_le"]]
    total = cum[-1][1]
    return next((le * 1e3 for le, n in cum if total and n >= 0.99 * total), None)


def bench_serve(ember, port, args, extra):
    cmd = [ember, "bench", "serve", "--server", f"127.0.0.1:{port}", "--model", "ibc",
           "--duration", str(args.duration), "--warmup", "1"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        if line.startswith("serve "):
            rows.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    return rows


def h2load_body(work, x_dim, samples, iters):
    """A gRPC-framed PredictRequest (model ibc, one row) encoded with stubs generated here."""
    gen = os.path.join(work, "stubs")
    os.makedirs(gen, exist_ok=True)
    from grpc_tools import protoc  # python3-grpc-tools
    if protoc.main(["protoc", f"-I{ROOT}/proto", f"--python_out={gen}",
                    f"{ROOT}/proto/ember/v1/ember.proto"]) != 0:
        sys.exit("bench/serve.py: protoc failed on proto/ember/v1/ember.proto")
    sys.path.insert(0, gen)
    from ember.v1 import ember_pb2
    req = ember_pb2.PredictRequest(model="ibc", rows=1, x=[0.1 * i for i in range(x_dim)])
    req.options.samples = samples
    req.options.iterations = iters
    req.options.seed = 1
    msg = req.SerializeToString()
    path = os.path.join(work, f"body-{samples}.bin")
    with open(path, "wb") as f:
        f.write(b"\0" + len(msg).to_bytes(4, "big") + msg)
    return path


def h2load(port, body, n, conns=4, streams=16, log=None):
    """h2load's figures; with log (a path), also p50 and p99 from its per-request log, the first
    1% of requests left out as warm-up."""
    cmd = ["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams), "-d", body,
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"http://127.0.0.1:{port}/ember.v1.Ember/Predict"] + ([f"--log-file={log}"] if log else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)

    def ms(v):
        return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1e3 if v.endswith("us") else float(v[:-1]) * 1e3
    r = {"req_s": rps, "done": int(done.group(1)), "succeeded": int(done.group(2)),
         "min_ms": ms(lat.group(1)), "max_ms": ms(lat.group(2)), "mean_ms": ms(lat.group(3))}
    if log:  # start (us since the epoch), HTTP status, microseconds to the end of the response;
        # h2load appends to an existing file, so each run needs a path of its own
        with open(log) as f:
            rows = sorted((int(l.split()[0]), int(l.split()[2])) for l in f if l.strip())
        t = sorted(us / 1e3 for _, us in rows[len(rows) // 100:])
        r["p50_ms"], r["p99_ms"] = t[len(t) // 2], t[min(len(t) - 1, len(t) * 99 // 100)]
    return r


# The serving targets, each a ratio or figure of one run's own measurements: (key, what, bound,
# "<=" or ">="). docs/performance.md reports them; `--runs N` counts the runs that meet each.
TARGETS = [
    ("p50_64", "1 stream, 64 x 3: p50 (ms)", 0.5, "<="),
    ("ratio_1024", "1 stream, 1024 x 3: p50 / the library's p50", 1.1, "<="),
    ("roof_64", "4 x 16 streams, 64 x 3: roofline (%)", 75, ">="),
    ("roof_1024", "4 x 16 streams, 1024 x 3: roofline (%)", 85, ">="),
    ("tail_1024", "64 streams closed loop, 1024 x 3: p99 / p50", 2.0, "<="),
    ("open_64", "open loop at half capacity, 64 x 3: p99 / unloaded p50", 3.0, "<="),
    ("open_1024", "open loop at half capacity, 1024 x 3: p99 / unloaded p50", 3.0, "<="),
]


def met(key, value):
    """Whether value meets the target named key."""
    _, _, bound, op = next(t for t in TARGETS if t[0] == key)
    return value <= bound if op == "<=" else value >= bound


def targets_table(runs):
    """Markdown rows: each target, per tool, every run's value and how many runs met it. runs is a
    list of {key: {tool: value}}."""
    lines = ["| target | tool | bound | " + " | ".join(f"run {k + 1}" for k in range(len(runs))) + " | met |",
             "|---|---|---|" + "---|" * (len(runs) + 1)]
    for key, what, bound, op in TARGETS:
        tools = sorted({tool for run in runs for tool in run.get(key, {})})
        for tool in tools:
            vals = [run.get(key, {}).get(tool) for run in runs]
            # enough digits that a value just past its bound does not print as the bound
            cells = ["" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.3f}") + ("" if met(key, v) else " (no)")
                     for v in vals]
            n = sum(1 for v in vals if v is not None and met(key, v))
            lines.append(f"| {what} | {tool} | {op} {bound:g} | " + " | ".join(cells) +
                         f" | {n} of {sum(1 for v in vals if v is not None)} |")
    return lines


class Peak:
    """The machine's sgemm peak the rooflines are taken against: the highest reading of this
    invocation (three from `ember bench infer` first, then each load's own). A reading taken while
    the host holds a vCPU can be half the machine's peak, never above it: single readings gave
    rooflines of 124-182% on the EPYC VM."""

    def __init__(self, ember, readings=3):
        self.best = 0.0
        for _ in range(readings):
            out = subprocess.run([ember, "bench", "infer", "--samples", "64", "--reps", "1", "--warmup", "0"],
                                 check=True, capture_output=True, text=True).stdout
            m = re.search(r"sgemm_peak_gflops=([\d.]+)", out)
            if m:
                self.best = max(self.best, float(m.group(1)))

    def see(self, r):
        """Takes a load's own reading into account; returns r."""
        if "sgemm_peak_gflops" in r:
            self.best = max(self.best, float(r["sgemm_peak_gflops"]))
        return r

    def roofline(self, qps, r):
        """qps queries/s of r's shape, as a percentage of the peak."""
        flop = float(r["gflops"]) / float(r["queries_per_s"]) * 1e9
        return 100 * qps * flop / 1e9 / self.best


def measure(args, work, port, mport, model, bodies, run, peak):
    """One run of every load (run: its number, for file names): the table's lines and
    {target key: {tool: value}}."""
    lines = []
    got = {}
    lines.append("| load | samples x iters | tool | queries/s | p50 | p99 | library p50 | server / library | roofline | avg batch |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    stage_rows = []
    capacity = {}
    unloaded = {}
    for samples in (64, 1024):
        m0 = metrics(mport)
        r = peak.see(bench_serve(args.ember, port, args, ["--streams", "1", "--samples", str(samples), "--local", model])[0])
        m1 = metrics(mport)
        if "calls" in m1:  # an emberd older than its stage metrics has none
            calls = m1["calls"] - m0["calls"]
            stage_rows.append((samples, calls, [(m1[s] - m0[s]) / calls * 1e6 for s in STAGES],
                               float(r["p50_ms"]) * 1e3, float(r["library_p50_ms"]) * 1e3))
        lines.append(f"| 1 stream | {samples} x 3 | ember bench serve | {float(r['queries_per_s']):,.0f} | "
                     f"{r['p50_ms']} ms | {r['p99_ms']} ms | {r['library_p50_ms']} ms | {r['server_overhead']} | "
                     f"{peak.roofline(float(r['queries_per_s']), r):.0f}% | {float(r['avg_batch_rows']):.1f} |")
        unloaded[samples] = float(r["p50_ms"])
        lib = float(r["library_p50_ms"])
        # the same load from an independent client, against the same library figure
        n = max(100, int(float(r["queries_per_s"]) * args.duration))
        m0 = metrics(mport)
        h = h2load(port, bodies[samples], n, 1, 1, os.path.join(work, f"h2load-{samples}-1-{run}.log"))
        ok = int(metrics(mport)["ok"] - m0["ok"])
        if ok != h["succeeded"] or h["succeeded"] != n:
            sys.exit(f"bench/serve.py: h2load says {h['succeeded']} of {n} succeeded, emberd answered {ok} OK")
        lines.append(f"| 1 stream | {samples} x 3 | h2load | {h['req_s']:,.0f} | {h['p50_ms']:.3f} ms | "
                     f"{h['p99_ms']:.3f} ms | {lib:.3f} ms | {h['p50_ms'] / lib:.2f}x | | |")
        if samples == 64:
            got["p50_64"] = {"ember bench serve": unloaded[64], "h2load": h["p50_ms"]}
        else:
            got["ratio_1024"] = {"ember bench serve": unloaded[1024] / lib, "h2load": h["p50_ms"] / lib}
    for samples in (64, 1024):
        r = peak.see(bench_serve(args.ember, port, args, ["--streams", "64", "--samples", str(samples)])[0])
        capacity[samples] = float(r["queries_per_s"])
        lines.append(f"| 64 streams, closed loop | {samples} x 3 | ember bench serve | {capacity[samples]:,.0f} | "
                     f"{r['p50_ms']} ms | {r['p99_ms']} ms | | | {peak.roofline(capacity[samples], r):.0f}% | "
                     f"{float(r['avg_batch_rows']):.1f} |")
        n = max(64, int(capacity[samples] * args.duration))
        m0 = metrics(mport)
        h = h2load(port, bodies[samples], n, log=os.path.join(work, f"h2load-{samples}-64-{run}.log"))
        m1 = metrics(mport)
        ok = int(m1["ok"] - m0["ok"])
        if ok != h["succeeded"] or h["succeeded"] != n:
            sys.exit(f"bench/serve.py: h2load says {h['succeeded']} of {n} succeeded, emberd answered {ok} OK")
        roof = peak.roofline(h["req_s"], r)
        lines.append(f"| 4 connections x 16 streams | {samples} x 3 | h2load | {h['req_s']:,.0f} | "
                     f"{h['p50_ms']:.3f} ms | {h['p99_ms']:.3f} ms | | | {roof:.0f}% | |")
        got[f"roof_{samples}"] = {"h2load": roof}
        if samples == 1024:
            got["tail_1024"] = {"ember bench serve": float(r["p99_ms"]) / float(r["p50_ms"]),
                                "h2load": h["p99_ms"] / h["p50_ms"]}
    for samples in (64, 1024):
        rate = max(1, int(capacity[samples] / 2))
        m0 = metrics(mport)
        r = peak.see(bench_serve(args.ember, port, args, ["--rate", str(rate), "--samples", str(samples), "--local", model])[0])
        sp99 = server_p99_ms(m0, metrics(mport))
        # how late the generator's own sends were (latency counts from the schedule), and what
        # emberd itself saw (arrival at its gRPC thread to the answer handed back; warm-up included)
        lag = (f"; sends late by {float(r['send_lag_mean_ms']):.2f} ms mean, "
               f"{float(r['send_lag_max_ms']):.1f} max" if "send_lag_mean_ms" in r else "")
        if sp99 is not None:
            lag += (f"; emberd's own p99 <= {sp99:g} ms" if sp99 != float("inf")
                    else "; emberd's own p99 above 10 s")
        if "library_open_p99_ms" in r:  # the library alone at the same rate, just before
            lag += (f"; the library alone at this rate: p50 {r['library_open_p50_ms']} ms, "
                    f"p99 {r['library_open_p99_ms']} ms")
        lines.append(f"| open loop, {rate}/s (half capacity{lag}) | {samples} x 3 | ember bench serve | "
                     f"{float(r['queries_per_s']):,.0f} | {r['p50_ms']} ms | {r['p99_ms']} ms | | | "
                     f"{peak.roofline(float(r['queries_per_s']), r):.0f}% | {float(r['avg_batch_rows']):.1f} |")
        got[f"open_{samples}"] = {"ember bench serve": float(r["p99_ms"]) / unloaded[samples]}
    if stage_rows:
        lines.append("")
        lines.append("Where one call's time goes, 1 stream (emberd's ember_request_stage_seconds_total over the "
                     "window, per call, microseconds):")
        lines.append("")
        lines.append("| samples x iters | calls | " + " | ".join(STAGES) + " | server total | client p50 | library p50 |")
        lines.append("|---|---|" + "---|" * (len(STAGES) + 3))
        for samples, calls, st, p50, lib in stage_rows:
            lines.append(f"| {samples} x 3 | {calls:.0f} | " + " | ".join(f"{v:.0f}" for v in st) +
                         f" | {sum(st):.0f} | {p50:.0f} | {lib:.0f} |")
    return lines, got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", default=os.path.join(ROOT, "build/release/ember"))
    ap.add_argument("--emberd", default=os.path.join(ROOT, "build/release/emberd"))
    ap.add_argument("--duration", type=float, default=5.0, help="timed seconds per configuration")
    ap.add_argument("--runs", type=int, default=1, help="measure everything this many times, one run after another")
    ap.add_argument("--split", type=int, help="emberd --split-batches (default: emberd's own default)")
    ap.add_argument("--out", help="also write the tables here")
    ap.add_argument("--note", default="", help="how busy the machine was, said under the table")
    args = ap.parse_args()
    if args.runs < 1:
        sys.exit("bench/serve.py: --runs must be >= 1")
    for tool in (args.ember, args.emberd):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench/serve.py: {tool} not found; run make build first")
    if not shutil.which("h2load"):
        sys.exit("bench/serve.py: h2load not found; run deploy/install-deps.sh --bench")
    work = tempfile.mkdtemp(prefix="ember-serve-bench-")
    models = os.path.join(work, "models", "ibc")
    os.makedirs(models)
    data = os.path.join(work, "d.csv")
    import random
    rnd = random.Random(1)
    with open(data, "w") as f:
        f.write(",".join([f"x{i}" for i in range(8)] + ["y:a", "y:b"]) + "\n")
        for _ in range(200):
            f.write(",".join(f"{rnd.random():.4f}" for _ in range(10)) + "\n")
    model = os.path.join(models, "1.safetensors")
    subprocess.run([args.ember, "train", "--data", data, "--y-dim", "2", "--width", "256", "--steps", "5",
                    "--batch", "64", "--quiet", "--out", model], check=True)
    port, mport = free_port(), free_port()
    log = open(os.path.join(work, "emberd.log"), "w")
    srv = subprocess.Popen([args.emberd, "--models", os.path.join(work, "models"), "--listen", f"127.0.0.1:{port}",
                            "--metrics-listen", f"127.0.0.1:{mport}", "--log-level", "warn"] +
                           (["--split-batches", str(args.split)] if args.split is not None else []), stderr=log)
    lines = []
    runs = []
    try:
        for _ in range(100):
            try:
                metrics(mport)
                break
            except OSError:
                time.sleep(0.1)
        blas = subprocess.run([args.ember, "--version"], capture_output=True, text=True).stdout.strip()
        info = dict(l.split(":", 1) for l in open("/proc/cpuinfo").read().split("\n\n")[0].splitlines() if ":" in l)
        info = {k.strip(): v.strip() for k, v in info.items()}
        cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
        if os.environ.get("OPENBLAS_CORETYPE"):  # it stands (ember_blas_better_core): say so
            blas += f", as OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} in the environment asks"
        split = f"--split-batches {args.split}" if args.split is not None else "its defaults"
        lines.append(f"Machine: {cpu}, {os.cpu_count()} cores; {blas}; emberd ({args.emberd}) with {split}, "
                     f"workers = cores. {args.note}".rstrip())
        bodies = {samples: h2load_body(work, 8, samples, 3) for samples in (64, 1024)}
        peak = Peak(args.ember)
        for k in range(args.runs):
            lines.append("")
            if args.runs > 1:
                lines.append(f"Run {k + 1} of {args.runs}:")
                lines.append("")
            table, got = measure(args, work, port, mport, model, bodies, k, peak)
            lines += table
            runs.append(got)
            print(f"bench/serve.py: run {k + 1} of {args.runs} done", file=sys.stderr, flush=True)
        lines.append("")
        lines.append(f"Each roofline is against the highest sgemm peak read up to its row in this invocation "
                     f"({peak.best:.1f} GFLOP/s at the end).")
        lines.append("")
        lines.append("Targets (each run's own figures; \"(no)\": not met):")
        lines.append("")
        lines += targets_table(runs)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=30)
        log.close()
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
