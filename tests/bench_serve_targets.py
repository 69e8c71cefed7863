#!/usr/bin/python3
"""bench/serve.py's bookkeeping: which values meet a target, the count per tool over runs, the
peak its rooflines are taken against, and a bad --runs. The measurement itself needs h2load and
a quiet machine; this checks only what turns its figures into "met in k of N"."""
import importlib.util
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("serve", os.path.join(ROOT, "bench", "serve.py"))
serve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serve)

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}")


# bounds are inclusive, and the direction follows the target
check(serve.met("open_64", 3.0), "p99 exactly 3x the unloaded p50 meets its target")
check(not serve.met("open_64", 3.01), "3.01x does not")
check(serve.met("ratio_1024", 1.1) and not serve.met("ratio_1024", 1.11), "1.1x meets, 1.11x does not")
check(serve.met("p50_64", 0.5) and not serve.met("p50_64", 0.501), "0.5 ms meets, 0.501 does not")
check(serve.met("roof_64", 75) and not serve.met("roof_64", 74.9), "a roofline of 75% meets, 74.9% does not")
check(serve.met("roof_1024", 90) and not serve.met("roof_1024", 84), "85% is a floor")
try:
    serve.met("no_such_target", 1.0)
    check(False, "an unknown target is an error")
except StopIteration:
    pass

runs = [
    {"open_64": {"ember bench serve": 2.5}, "ratio_1024": {"ember bench serve": 1.05, "h2load": 1.2}},
    {"open_64": {"ember bench serve": 9.2}, "ratio_1024": {"ember bench serve": 1.15, "h2load": 1.07}},
    {"open_64": {"ember bench serve": 3.0}},
]
rows = serve.targets_table(runs)
check(rows[0].count("| run ") == 3, "one column per run")
row = {(r.split(" | ")[0].lstrip("| "), r.split(" | ")[1]): r for r in rows[2:]}
what = {k: w for k, w, _, _ in serve.TARGETS}
open_row = row[(what["open_64"], "ember bench serve")]
check(open_row.endswith("| 2 of 3 |"), f"open loop met in 2 of 3 runs: {open_row}")
check("9.200 (no)" in open_row and "| 2.500 |" in open_row, f"the miss is marked, the hits are not: {open_row}")
near = serve.targets_table([{"ratio_1024": {"h2load": 1.104}}])[2]
check("1.104 (no)" in near, f"a value just past the bound does not print as the bound: {near}")
r_bench = row[(what["ratio_1024"], "ember bench serve")]
r_h2 = row[(what["ratio_1024"], "h2load")]
check(r_bench.endswith("| 1 of 2 |") and r_h2.endswith("| 1 of 2 |"),
      f"a run without the figure is not counted: {r_bench} / {r_h2}")
check(r_bench.rstrip(" |").split(" | ")[-2] == "", "the run without the figure has an empty cell")
check(not any(what["roof_64"] in r for r in rows), "a target no run measured has no row")

# rooflines are taken against the highest sgemm peak read so far, never a lower later reading
peak = serve.Peak("unused", readings=0)
peak.see({"sgemm_peak_gflops": "100.0"})
peak.see({"sgemm_peak_gflops": "50.0"})  # a reading taken while the host held a vCPU
peak.see({})                               # a line without a reading
check(peak.best == 100.0, f"the highest reading is kept: {peak.best}")
shape = {"gflops": "10.0", "queries_per_s": "100.0"}  # 0.1 GFLOP per query
roof = peak.roofline(500.0, shape)
check(abs(roof - 50.0) < 1e-9, f"500 queries/s of 0.1 GFLOP against 100 GFLOP/s is 50%: {roof}")

# bad input: a run count below 1 is refused before anything is measured
import subprocess
r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "serve.py"), "--runs", "0"],
                   capture_output=True, text=True, timeout=60)
check(r.returncode != 0 and "--runs must be >= 1" in r.stderr, f"--runs 0 is refused: rc {r.returncode}, {r.stderr!r}")

print("ok - bench/serve.py targets" if not failures else f"{failures} failure(s)")
sys.exit(1 if failures else 0)
