"""Soak test for emberd (not run by CI): mixed load for N minutes while the repository changes.

    /usr/bin/python3 tests/soak/soak.py --emberd build/release/emberd --ember build/release/ember \
        [--minutes 30] [--clients 32] [--window 60] [--csv soak.csv] [--workdir DIR]

What runs at once, against one emberd on a free loopback port:
- `--clients` threads in a closed loop, spread over 8 channels (a connection each): Predict on a dfo model
  (1-4 rows, 256 samples), Sample on a two-output model (2 modes), now and then GetModel; and
  clients that vanish mid-call: a call cancelled after 0-20 ms, a call on a fresh channel (a
  new connection) that is closed after 0-20 ms, and a call with a 1-5 ms deadline.
- every `--reload-every` seconds a repository change: a new version of the Predict model
  published by rename, the latest version touched (reloaded in place), or the oldest removed,
  so a handful of versions come and go;
- every `--train-every` seconds a Train job on a --data-dir dataset, every third one
  cancelled after its first progress message; old trained versions are removed.

Every second it samples emberd's RSS (/proc/PID/status VmRSS), open file descriptors
(/proc/PID/fd) and threads. Every `--window` seconds it prints a row: calls, failures by
status, p50/p99 latency of the OK Predict and Sample calls, RSS, fds, threads; the rows also go
to `--csv`. At the end: every call by kind and status, with the statuses a kind is expected to
end with (a cancelled call CANCELLED, a 1-5 ms deadline DEADLINE_EXCEEDED or OK) and the
unexplained rest, the RSS and fd drift once connections that vanished clients left open have
been closed by emberd's --max-idle-ms (after two idle periods), and emberd's exit status after
SIGTERM. The exit status is 1 when a call failed unexplained, emberd did not exit 0, or its
fds or RSS grew after those two idle periods.

Only /usr/bin/python3 with Debian's python3-grpcio and python3-grpc-tools; stubs and the
emberd wrapper come from tests/integration/ember_it.py.
"""
import argparse
import csv
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

CHANNELS = 8
# grpcio shares one connection among channels to the same target with the same arguments; a
# local subchannel pool gives each channel its own TCP connection, so closing one is a client
# that really disconnects
OWN_CONNECTION = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
OK = grpc.StatusCode.OK
CANCELLED = grpc.StatusCode.CANCELLED
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED

# what each kind of call may end with besides OK
EXPECTED = {
    "predict": set(),
    "sample": set(),
    "getmodel": set(),
    "cancel": {CANCELLED},     # cancelled by the client after 0-20 ms (or answered before)
    "close": {CANCELLED},      # its channel closed after 0-20 ms
    "deadline": {DEADLINE},    # a 1-5 ms deadline
    "train": set(),
    "train-cancel": {CANCELLED},
}


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


class Soak:
    def __init__(self, a):
        self.a = a
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # calls by report window (end time, kind, code, latency s), and totals by kind and
        # status: a row is computed from its own window, so the harness's cost stays flat over
        # a long run
        self.windows = {}
        self.totals = {}
        self.samples = []    # (time, rss kB, fds, threads)
        self.events = []     # (time, what)
        self.errors = []     # exceptions in the harness itself
        self.t0 = None
        self.rows = []       # the report rows of the windows that have ended

    # ---- set-up -------------------------------------------------------------------------------

    def cli(self, *args):
        import subprocess
        r = subprocess.run([it.EMBER] + [str(x) for x in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("ember %s: %s" % (" ".join(map(str, args)), r.stderr))
        return r.stdout

    def prepare(self):
        w = self.a.workdir
        self.repo = os.path.join(w, "repo")
        self.data = os.path.join(w, "data")
        self.build = os.path.join(w, "build")
        for d in (self.repo, self.data, self.build):
            os.makedirs(d)
        jump = it.jump_data(os.path.join(self.data, "jump.csv"), n=400)
        two = it.two_out_data(os.path.join(self.data, "two.csv"), n=300)
        common = ["--steps", 300, "--batch", 64, "--negatives", 32, "--threads", 1, "--quiet"]
        self.variants = []
        for seed, width in ((1, 64), (2, 48), (3, 64)):
            out = os.path.join(self.build, "jump-%d.safetensors" % seed)
            self.cli("train", "--data", jump, "--out", out, "--width", width, "--seed", seed, *common)
            self.variants.append(out)
        os.makedirs(os.path.join(self.repo, "two"))
        self.cli("train", "--data", two, "--y-dim", 2, "--out", os.path.join(self.repo, "two", "1.safetensors"),
                 "--width", 64, "--seed", 1, *common)
        self.jump_dir = os.path.join(self.repo, "jump")
        os.makedirs(self.jump_dir)
        self.next_version = 1
        self.publish_jump()

    def publish_jump(self):
        src = self.variants[self.next_version % len(self.variants)]
        tmp = os.path.join(self.jump_dir, ".soak.tmp")
        shutil.copyfile(src, tmp)
        os.rename(tmp, os.path.join(self.jump_dir, "%d.safetensors" % self.next_version))
        self.next_version += 1

    # ---- load ---------------------------------------------------------------------------------

    def record(self, kind, code, seconds):
        now = time.monotonic()
        with self.lock:
            self.windows.setdefault(int((now - self.t0) // self.a.window), []).append((now, kind, code, seconds))
            self.totals[(kind, code)] = self.totals.get((kind, code), 0) + 1

    def client(self, i, stubs):
        rng = random.Random(i)
        try:
            while not self.stop.is_set():
                stub = stubs[rng.randrange(len(stubs))]
                r = rng.random()
                rows = rng.randint(1, 4)
                x2 = [it.grid_value(rng) for _ in range(2 * rows)]
                opts = it.pb.InferenceOptions(samples=256, seed=rng.randrange(1 << 30))
                t = time.monotonic()
                if r < 0.55:
                    kind, (code, _, _) = "predict", it.call(stub.Predict, it.pb.PredictRequest(model="jump", x=x2, options=opts), 30)
                elif r < 0.80:
                    x1 = [it.grid_value(rng) for _ in range(rows)]
                    kind, (code, _, _) = "sample", it.call(stub.Sample, it.pb.SampleRequest(model="two", x=x1, modes=2, options=opts), 30)
                elif r < 0.83:
                    kind, (code, _, _) = "getmodel", it.call(stub.GetModel, it.pb.GetModelRequest(model="jump"), 30)
                elif r < 0.91:
                    kind = "cancel"
                    fut = stub.Predict.future(it.pb.PredictRequest(model="jump", x=x2, options=opts), timeout=30)
                    time.sleep(rng.uniform(0, 0.02))
                    fut.cancel()
                    code = self.outcome(fut)
                elif r < 0.96:
                    kind = "close"
                    ch = grpc.insecure_channel(self.srv.target, options=OWN_CONNECTION)
                    fut = it.pbg.EmberStub(ch).Predict.future(it.pb.PredictRequest(model="jump", x=x2, options=opts), timeout=30)
                    time.sleep(rng.uniform(0, 0.02))
                    ch.close()
                    code = self.outcome(fut)
                else:
                    kind, (code, _, _) = "deadline", it.call(stub.Predict, it.pb.PredictRequest(model="jump", x=x2, options=opts),
                                                              rng.uniform(0.001, 0.005))
                self.record(kind, code, time.monotonic() - t)
        except Exception as e:  # a harness bug, not an emberd failure: reported at the end
            self.errors.append("client %d: %r" % (i, e))

    @staticmethod
    def outcome(fut):
        try:
            fut.result(timeout=60)
            return OK
        except grpc.FutureCancelledError:
            return CANCELLED
        except grpc.RpcError as e:
            return e.code()

    def reloader(self):
        step = 0
        while not self.stop.wait(self.a.reload_every):
            try:
                versions = sorted(int(f.split(".")[0]) for f in os.listdir(self.jump_dir) if f[0].isdigit())
                action = step % 3
                if action == 0 or len(versions) < 2:
                    self.publish_jump()
                    what = "published jump %d" % (self.next_version - 1)
                elif action == 1:
                    path = os.path.join(self.jump_dir, "%d.safetensors" % versions[-1])
                    os.utime(path)
                    what = "touched jump %d" % versions[-1]
                else:
                    os.remove(os.path.join(self.jump_dir, "%d.safetensors" % versions[0]))
                    what = "removed jump %d" % versions[0]
                step += 1
                with self.lock:
                    self.events.append((time.monotonic(), what))
            except Exception as e:
                self.errors.append("reloader: %r" % e)

    def trainer(self):
        n = 0
        tdir = os.path.join(self.repo, "trained")
        while not self.stop.wait(self.a.train_every):
            n += 1
            cancel = n % 3 == 0
            kind = "train-cancel" if cancel else "train"
            req = it.pb.TrainRequest(model="trained", dataset="jump.csv", width=32, steps=300, batch=32,
                                     negatives=16, seed=n, samples=128)
            t = time.monotonic()
            try:
                w = it.Watcher(self.srv.stub.Train(req, timeout=300))
                if cancel:
                    w.next(timeout=120)
                    w.cancel()
                code, _ = w.wait_end(300)
            except Exception as e:
                self.errors.append("trainer: %r" % e)
                continue
            self.record(kind, code, time.monotonic() - t)
            versions = sorted(int(f.split(".")[0]) for f in os.listdir(tdir) if f[0].isdigit()) if os.path.isdir(tdir) else []
            for v in versions[:-2]:
                os.remove(os.path.join(tdir, "%d.safetensors" % v))

    def monitor(self):
        pid = self.srv.proc.pid
        while not self.stop.wait(1.0):
            try:
                rss = threads = 0
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1])
                        elif line.startswith("Threads:"):
                            threads = int(line.split()[1])
                fds = len(os.listdir("/proc/%d/fd" % pid))
            except OSError:
                continue
            with self.lock:
                self.samples.append((time.monotonic(), rss, fds, threads))

    # ---- report -------------------------------------------------------------------------------

    def window_rows(self, upto):
        """The rows of every window that has ended by `upto`; each is computed once."""
        W = self.a.window
        rows = self.rows
        k = len(rows)
        with self.lock:
            samples, events = list(self.samples), list(self.events)
        while self.t0 + (k + 1) * W <= upto + 1e-9:
            lo, hi = self.t0 + k * W, self.t0 + (k + 1) * W
            with self.lock:
                cs = self.windows.pop(k, [])
            ss = [s for s in samples if lo <= s[0] < hi]
            fails = {}
            unexplained = 0
            for _, kind, code, _ in cs:
                if code != OK:
                    fails[code.name] = fails.get(code.name, 0) + 1
                    unexplained += code not in EXPECTED[kind]
            lat = lambda kind: [c[3] * 1e3 for c in cs if c[1] == kind and c[2] == OK]  # noqa: E731
            rows.append(dict(
                t_s=int(hi - self.t0), calls=len(cs), ok=sum(c[2] == OK for c in cs),
                failed=" ".join("%s:%d" % kv for kv in sorted(fails.items())) or "-", unexplained=unexplained,
                predict_p50_ms=pct(lat("predict"), 0.5), predict_p99_ms=pct(lat("predict"), 0.99),
                sample_p50_ms=pct(lat("sample"), 0.5), sample_p99_ms=pct(lat("sample"), 0.99),
                rss_mib=(ss[-1][1] / 1024.0) if ss else float("nan"),
                rss_max_mib=(max(s[1] for s in ss) / 1024.0) if ss else float("nan"),
                fds=ss[-1][2] if ss else -1, fds_max=max(s[2] for s in ss) if ss else -1,
                threads=ss[-1][3] if ss else -1,
                reloads=sum(1 for e in events if lo <= e[0] < hi),
                trains=sum(1 for c in cs if c[1].startswith("train"))))
            k += 1
        return rows

    HEADER = ("%6s %7s %7s %-34s %5s %8s %8s %8s %8s %8s %8s %5s %5s %4s %4s" %
              ("t_s", "calls", "ok", "failed (status:count)", "unexp", "pred_p50", "pred_p99", "samp_p50",
               "samp_p99", "rss_MiB", "rssmax", "fds", "fdmax", "thr", "rel"))

    @staticmethod
    def fmt(r):
        return ("%6d %7d %7d %-34s %5d %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %5d %5d %4d %4d" %
                (r["t_s"], r["calls"], r["ok"], r["failed"][:34], r["unexplained"], r["predict_p50_ms"],
                 r["predict_p99_ms"], r["sample_p50_ms"], r["sample_p99_ms"], r["rss_mib"], r["rss_max_mib"],
                 r["fds"], r["fds_max"], r["threads"], r["reloads"]))

    # ---- run ----------------------------------------------------------------------------------

    def run(self):
        a = self.a
        self.prepare()
        self.srv = it.Emberd(["--models", self.repo, "--data-dir", self.data, "--workers", a.workers,
                              "--poll-ms", 1000, "--drain-ms", 200, "--max-idle-ms", a.max_idle_ms], a.workdir)
        print("emberd pid %d on %s; %d clients for %.1f min; windows of %ds; log %s" %
              (self.srv.proc.pid, self.srv.target, a.clients, a.minutes, a.window, self.srv.log_path), flush=True)
        channels = [self.srv.new_channel(options=OWN_CONNECTION[1:]) for _ in range(CHANNELS)]
        stubs = [it.pbg.EmberStub(ch) for ch in channels]
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(i, stubs), daemon=True) for i in range(a.clients)]
        threads += [threading.Thread(target=f, daemon=True) for f in (self.reloader, self.trainer, self.monitor)]
        for t in threads:
            t.start()
        end = self.t0 + a.minutes * 60
        printed = 0
        print(self.HEADER, flush=True)
        rows = []
        with open(a.csv, "w", newline="") as f:
            out = None
            try:
                while True:
                    now = time.monotonic()
                    rows = self.window_rows(min(now, end))
                    for r in rows[printed:]:
                        print(self.fmt(r), flush=True)
                        if out is None:
                            out = csv.DictWriter(f, fieldnames=list(r))
                            out.writeheader()
                        out.writerow(r)
                        f.flush()
                    printed = len(rows)
                    if now >= end or not self.srv.running():
                        break
                    time.sleep(min(1.0, max(0.0, end - now)))
            except KeyboardInterrupt:  # Ctrl-C: stop early, still report and stop emberd
                print("interrupted", flush=True)
        self.stop.set()
        for t in threads:
            t.join(timeout=120)
        stuck = [t.name for t in threads if t.is_alive()]
        for ch in channels:
            ch.close()
        return self.report(rows, stuck)

    def report(self, rows, stuck):
        alive = self.srv.running()
        rc = None
        if alive:
            self.srv.signal(signal.SIGTERM)
            rc = self.srv.wait(120)
        by = {}
        for (kind, code), n in self.totals.items():
            by.setdefault(kind, {})[code.name] = n
        print("\ncalls by kind and status (expected besides OK):")
        unexplained = 0
        for kind in sorted(by):
            bad = sum(n for c, n in by[kind].items() if c != "OK" and grpc.StatusCode[c] not in EXPECTED[kind])
            unexplained += bad
            print("  %-13s %-60s expected: %-22s unexplained: %d" %
                  (kind, " ".join("%s:%d" % kv for kv in sorted(by[kind].items())),
                   ",".join(sorted(c.name for c in EXPECTED[kind])) or "-", bad))
        print("repository changes: %d; harness errors: %d%s" % (len(self.events), len(self.errors),
                                                                 "".join("\n  " + e for e in self.errors[:10])))
        ok = unexplained == 0 and not self.errors and not stuck and rc == 0
        # emberd closes a connection after --max-idle-ms without a call, so connections that
        # vanished clients left open come and go: fds and RSS reach their level within about two
        # idle periods. Drift is judged on the rows after that: the second half of them may not
        # hold more fds (4 of slack) or more RSS (10% + 2 MiB) than the first half did.
        settle = max(60.0, 2 * self.a.max_idle_ms / 1000.0)
        steady = [r for r in rows if r["t_s"] >= settle]
        if len(rows) >= 1:
            print("RSS: window 1 %.1f MiB, max %.1f, last %.1f MiB; fds: window 1 %d, max %d, last %d" %
                  (rows[0]["rss_mib"], max(r["rss_mib"] for r in rows), rows[-1]["rss_mib"], rows[0]["fds"],
                   max(r["fds"] for r in rows), rows[-1]["fds"]))
        if len(steady) >= 4:
            h = len(steady) // 2
            early, late = steady[:h], steady[h:]
            fd0, fd1 = max(r["fds"] for r in early), max(r["fds"] for r in late)
            rss0, rss1 = max(r["rss_mib"] for r in early), max(r["rss_mib"] for r in late)
            print("after %.0f s (two idle periods): fds max %d then %d; RSS max %.1f then %.1f MiB" %
                  (settle, fd0, fd1, rss0, rss1))
            ok = ok and fd1 <= fd0 + 4 and rss1 <= rss0 * 1.1 + 2.0
        else:
            print("drift not judged: fewer than 4 windows after %.0f s (two idle periods)" % settle)
        log = self.srv.log()
        print("emberd: %s; log lines at level=error: %d; sanitizer reports: %d; threads stuck: %s" %
              ("exit status %s" % rc if rc is not None else "DIED (%s)" % self.srv.proc.returncode,
               log.count("level=error"), sum(log.count(m) for m in it.SANITIZER_MARKS), stuck or "none"))
        print("csv: %s" % self.a.csv)
        print("RESULT: %s" % ("PASS" if ok else "FAIL"))
        return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emberd", required=True)
    p.add_argument("--ember", required=True)
    p.add_argument("--source", default=os.path.join(HERE, "..", ".."), help="the source tree (for proto/)")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="emberd --workers")
    p.add_argument("--window", type=int, default=60, help="seconds per report row")
    p.add_argument("--reload-every", type=float, default=5.0)
    p.add_argument("--train-every", type=float, default=45.0)
    p.add_argument("--max-idle-ms", type=int, help="emberd --max-idle-ms (default: emberd's, read from its --help)")
    p.add_argument("--csv", default="soak.csv")
    p.add_argument("--workdir", help="scratch directory (default: a fresh one under $TMPDIR, removed on success)")
    a = p.parse_args()
    it.EMBERD, it.EMBER, it.SOURCE = (os.path.abspath(x) for x in (a.emberd, a.ember, a.source))
    if a.max_idle_ms is None:
        usage = subprocess.run([it.EMBERD, "--help"], capture_output=True, text=True).stdout
        a.max_idle_ms = int(re.search(r"--max-idle-ms .*\(default (\d+)\)", usage).group(1))
    made = a.workdir is None
    a.workdir = a.workdir or tempfile.mkdtemp(prefix="ember-soak-")
    os.makedirs(a.workdir, exist_ok=True)
    it._generate_stubs(os.path.join(a.workdir, "stubs"))
    rc = Soak(a).run()
    if made and rc == 0:
        shutil.rmtree(a.workdir, ignore_errors=True)
    elif made:
        print("scratch directory kept: %s" % a.workdir)
    return rc


if __name__ == "__main__":
    sys.exit(main())
