"""A lab cluster on loopback: three emberd replicas sharing one model repository, behind nginx
(deploy/compose/nginx.conf), behind HAProxy (deploy/compose/haproxy.cfg), and with no balancer
(client-side round robin), each driven by a steady load of Predicts from two Python clients at
once: one with the documented service config (deploy/grpc/service-config.json: round_robin,
retries on UNAVAILABLE and CANCELLED, wait-for-ready, and the keepalive of wire.h), one
without. One replica gets SIGTERM, another SIGKILL, and both are restarted on their ports. The
client with the documented config must lose no call; the other's failures are printed, not
asserted (they depend on timing). Also: a version published into the shared repository is
served by every replica within 2 s, a Train call through each balancer outlives the
balancer's 3 s timeouts, and `ember --server IP:P,IP:P,IP:P` rides over a dead replica.

The balancers run from Debian's nginx and haproxy packages, as the current user, on loopback
ports, with the repository's own configuration files: the test substitutes addresses, paths and
timeouts, and fails if a substitution no longer finds its line."""
import json
import os

# gRPC core logs every answer nginx sends as HTML (its 502 page) at ERROR level; the test counts
# those calls itself. Read when grpc initialises, so set before ember_it imports it.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

OK = grpc.StatusCode.OK
PROXY_TIMEOUT_S = 3  # every balancer timeout in the test configs: a Train call must outlive it
PUBLISH_WITHIN_S = 2.0


def http_status(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def documented_options():
    """What docs/cluster.md tells Python grpcio users to pass: the service config file and the
    keepalive numbers of wire/wire.h (read from there, so that the test follows them)."""
    with open(os.path.join(it.SOURCE, "deploy", "grpc", "service-config.json")) as f:
        config = json.dumps(json.load(f))
    with open(os.path.join(it.SOURCE, "wire", "wire.h")) as f:
        wire = f.read()
    ka = {k: int(re.search(r"#define EMBER_KEEPALIVE_%s (\d+)" % k, wire).group(1)) for k in ("TIME_MS", "TIMEOUT_MS")}
    return [("grpc.service_config", config), ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", ka["TIME_MS"]), ("grpc.keepalive_timeout_ms", ka["TIMEOUT_MS"]),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_http_proxy", 0)]


def substitute(text, pattern, repl, what):
    out, n = re.subn(pattern, repl, text, flags=re.M)
    if n == 0:
        raise AssertionError("%s: no line matches %r any more; update test_cluster.py" % (what, pattern))
    return out


class Load:
    """Predicts in a loop on `threads` threads through one channel, counted by status code."""

    def __init__(self, target, options, threads=3):
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = it.pbg.EmberStub(self.channel)
        self.codes = {}
        self.details = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i):
        k = 0
        while not self.stop.is_set():
            k += 1
            req = it.pb.PredictRequest(model="m", x=[0.25 * (i % 4) - 0.5, 0.125 * (k % 8)],
                                       options=it.pb.InferenceOptions(samples=64, iterations=2))
            code, _, details = it.call(self.stub.Predict, req, timeout=10 * it.SCALE)
            with self.lock:
                self.codes[code] = self.codes.get(code, 0) + 1
                if code != OK:
                    self.details.setdefault(code, details)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30 * it.SCALE)
        self.channel.close()

    def total(self):
        return sum(self.codes.values())

    def failed(self):
        return self.total() - self.codes.get(OK, 0)

    def summary(self):
        bad = ", ".join("%s %d (%s)" % (c.name, n, self.details.get(c, "")[:80])
                        for c, n in self.codes.items() if c != OK)
        return "%d failed of %d%s" % (self.failed(), self.total(), ": " + bad if bad else "")


class Cluster(it.EmberTest):
    model = data = None  # trained once, for every test

    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        if Cluster.model is None:
            Cluster.data = it.jump_data(os.path.join(it.SCRATCH, "jump.csv"), n=200)
            Cluster.model = self.train(os.path.join(it.SCRATCH, "m.safetensors"), Cluster.data, width=16, seed=1)
        os.makedirs(os.path.join(self.repo, "m"))
        self.publish(self.model, os.path.join(self.repo, "m", "1.safetensors"))
        self.ports = [it.free_port() for _ in range(3)]
        self.mports = [it.free_port() for _ in range(3)]
        self.replicas = [None] * 3
        for i in range(3):
            self.start_replica(i)
        self.procs = []

    # ---- replicas -------------------------------------------------------------------------

    def start_replica(self, i):
        # --drain-ms long enough for HAProxy's 1 s checks to see /readyz turn 503; Train on (the
        # repository is writable here) at nice 0, so that a loaded test machine does not starve
        # it of the CPU it needs to stream progress
        self.replicas[i] = self.start(
            "--models", self.repo, "--listen", "127.0.0.1:%d" % self.ports[i],
            "--metrics-listen", "127.0.0.1:%d" % self.mports[i], "--workers", 1, "--poll-ms", 500,
            "--drain-ms", 1500, "--grace-ms", 5000, "--train-nice", 0)
        it.wait_until("replica %d ready" % i, lambda: http_status(self.readyz(i)) == 200, timeout=30 * it.SCALE)

    def readyz(self, i):
        return "http://127.0.0.1:%d/readyz" % self.mports[i]

    def replica_list(self):
        return ",".join("127.0.0.1:%d" % p for p in self.ports)

    def disrupt(self, loads):
        """SIGTERM replica 0 and SIGKILL replica 1 under load, then restart both."""
        time.sleep(1.0)
        r0, r1 = self.replicas[0], self.replicas[1]
        r0.signal(signal.SIGTERM)
        # draining: /readyz says 503 at once, the process still answers
        it.wait_until("/readyz 503 while draining", lambda: http_status(self.readyz(0)) == 503, timeout=5 * it.SCALE)
        self.assertEqual(http_status("http://127.0.0.1:%d/livez" % self.mports[0]), 200)
        time.sleep(0.5)
        r1.proc.kill()
        r1.kill()
        r0.assert_clean(self, r0.wait())
        time.sleep(0.5)  # two replicas gone: everything runs on the third
        self.start_replica(0)
        self.start_replica(1)
        time.sleep(1.0)  # traffic back on all three
        for lo in loads:
            lo.finish()

    # ---- balancers ------------------------------------------------------------------------

    def spawn(self, name, argv):
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        log.close()

        def stop():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        self.addCleanup(stop)
        return p

    def wait_balancer(self, name, proc, target):
        ch = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
        stub = it.pbg.EmberStub(ch)

        def answers():
            if proc.poll() is not None:
                with open(os.path.join(self.tmp, name + ".log")) as f:
                    raise AssertionError("%s exited %s:\n%s" % (name, proc.returncode, f.read()[-3000:]))
            return it.call(stub.ListModels, it.pb.ListModelsRequest(), timeout=2)[0] == OK
        it.wait_until(name + " answering", answers, timeout=30 * it.SCALE)
        ch.close()

    def start_nginx(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        with open(os.path.join(it.SOURCE, "deploy", "compose", "nginx.conf")) as f:
            conf = f.read()
        what = "deploy/compose/nginx.conf"
        for i in range(3):
            conf = substitute(conf, r"server emberd-%d:50051" % (i + 1), "server 127.0.0.1:%d" % self.ports[i], what)
        lb = it.free_port()
        conf = substitute(conf, r"listen 50051 http2;", "listen 127.0.0.1:%d http2;" % lb, what)
        conf = substitute(conf, r"grpc_(read|send)_timeout \d+s;", r"grpc_\1_timeout %ds;" % PROXY_TIMEOUT_S, what)
        conf = substitute(conf, r"^pid .*;$", "pid %s/nginx.pid;" % self.tmp, what)
        temp = "".join("    %s_temp_path %s/%s;\n" % (k, self.tmp, k)
                       for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = substitute(conf, r"^http \{\n", "http {\n" + temp, what)
        # the master stays in the foreground, as the test's child; as root, its worker too
        # (the default would be nobody, who cannot use the test's directories)
        head = "daemon off;\n" + ("user root;\n" if os.geteuid() == 0 else "")
        path = os.path.join(self.tmp, "nginx.conf")
        with open(path, "w") as f:
            f.write(head + conf)
        p = self.spawn("nginx", [nginx, "-p", self.tmp, "-c", path, "-e", os.path.join(self.tmp, "nginx.err")])
        target = "127.0.0.1:%d" % lb
        self.wait_balancer("nginx", p, target)
        return target

    def start_haproxy(self):
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        with open(os.path.join(it.SOURCE, "deploy", "compose", "haproxy.cfg")) as f:
            conf = f.read()
        what = "deploy/compose/haproxy.cfg"
        for i in range(3):
            conf = substitute(conf, r"server emberd-%d emberd-%d:50051" % (i + 1, i + 1),
                              "server emberd-%d 127.0.0.1:%d port %d" % (i + 1, self.ports[i], self.mports[i]), what)
        lb = it.free_port()
        conf = substitute(conf, r"bind :50051 proto h2", "bind 127.0.0.1:%d proto h2" % lb, what)
        conf = substitute(conf, r"bind :8404", "bind 127.0.0.1:%d" % it.free_port(), what)
        conf = substitute(conf, r"timeout (client|server) \d+s", r"timeout \1 %ds" % PROXY_TIMEOUT_S, what)
        path = os.path.join(self.tmp, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        check = subprocess.run([haproxy, "-c", "-f", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout)
        p = self.spawn("haproxy", [haproxy, "-db", "-f", path])
        target = "127.0.0.1:%d" % lb
        self.wait_balancer("haproxy", p, target)
        return target

    # ---- the scenarios --------------------------------------------------------------------

    def ride_over(self, name, target):
        """Both clients on `target` while two replicas go away and come back."""
        with_retries = Load(target, documented_options())
        without = Load(target, [("grpc.enable_http_proxy", 0)])
        for lo in (with_retries, without):
            lo.start()
        self.disrupt([with_retries, without])
        print("  %s: with the documented service config %s; without it %s" %
              (name, with_retries.summary(), without.summary()))
        self.assertGreater(with_retries.codes.get(OK, 0), 50, "too little load to show anything")
        self.assertEqual(with_retries.failed(), 0, "%s: %s" % (name, with_retries.summary()))

    def long_train(self, name, target):
        """A Train call through the balancer that lasts longer than its timeouts. How long a
        number of steps takes depends on the machine and its load: 120 steps first, and if that
        was too quick to show anything, again with as many more as should take 6 s."""
        req = dict(model="t", x=[], y=[], x_dim=2, y_dim=1, width=16, batch=32, negatives=16, seed=1, samples=64)
        with open(self.data) as f:
            rows = [list(map(float, line.split(","))) for line in f.read().splitlines()[1:]]
        for r in rows:
            req["x"] += r[:2]
            req["y"] += r[2:]
        tdir = os.path.join(self.repo, "t")
        steps, took = 120, 0.0
        ch = grpc.insecure_channel(target, options=documented_options())
        self.addCleanup(ch.close)
        for _ in range(3):
            versions = [int(n.split(".")[0]) for n in (os.listdir(tdir) if os.path.isdir(tdir) else [])
                        if re.fullmatch(r"[1-9][0-9]*\.safetensors", n)]
            t0 = time.monotonic()
            try:
                msgs = list(it.pbg.EmberStub(ch).Train(it.pb.TrainRequest(steps=steps, **req), timeout=120 * it.SCALE))
            except grpc.RpcError as e:
                self.fail("%s: Train of %d steps failed after %.1f s: %s %s" %
                          (name, steps, time.monotonic() - t0, e.code(), e.details()))
            took = time.monotonic() - t0
            print("  %s: Train of %d steps through it took %.1f s (its timeouts: %d s), %d progress messages" %
                  (name, steps, took, PROXY_TIMEOUT_S, len(msgs)))
            self.assertTrue(msgs[-1].done, msgs[-1])
            self.assertEqual(msgs[-1].version, max(versions, default=0) + 1)
            if took > PROXY_TIMEOUT_S + 0.5:
                return
            steps = int(steps * 6.0 / max(took, 0.05))
        self.fail("three Train calls were all too short to outlive the timeouts (last: %d steps, %.1f s)" %
                  (steps, took))

    def test_nginx(self):
        target = self.start_nginx()
        self.ride_over("nginx", target)
        self.long_train("nginx", target)

    def test_haproxy(self):
        target = self.start_haproxy()
        self.ride_over("haproxy", target)
        self.long_train("haproxy", target)

    def test_client_side(self):
        """No balancer: the clients balance over the three replicas themselves. Then a version
        published into the shared repository, and the CLI given the list of replicas."""
        self.ride_over("client-side round_robin", "ipv4:" + self.replica_list())
        self.publication_reaches_every_replica()
        self.cli_cluster_target()

    def publication_reaches_every_replica(self):
        self.publish(self.model, os.path.join(self.repo, "m", "2.safetensors"))
        t0 = time.monotonic()
        seen = [None] * 3
        while None in seen and time.monotonic() - t0 < 10 * it.SCALE:
            for i in range(3):
                if seen[i] is None:
                    info = self.replicas[i].stub.GetModel(it.pb.GetModelRequest(model="m"), timeout=5 * it.SCALE)
                    if info.version == 2:
                        seen[i] = time.monotonic() - t0
            time.sleep(0.02)
        print("  version 2 served by each replica after: %s s" %
              ", ".join("never" if s is None else "%.2f" % s for s in seen))
        self.assertNotIn(None, seen)
        # a poll period (--poll-ms 500) and loading the file: slower in an instrumented build
        self.assertLess(max(seen), PUBLISH_WITHIN_S * it.SCALE)

    def cli_cluster_target(self):
        """`ember --server` with several addresses balances over them and rides over a
        replica that is gone; a malformed list is refused before anything is sent."""
        query = os.path.join(self.tmp, "q.csv")
        with open(query, "w") as f:
            f.write("a,b\n0.25,0.5\n-0.5,0.75\n")
        one = self.cli("--server", "127.0.0.1:%d" % self.ports[2], "predict", "--model", "m", "--input", query,
                       "--seed", 3)
        # replica 0 is dead: its address stays in the list, and no call may fail for it
        self.replicas[0].proc.kill()
        self.replicas[0].kill()
        for _ in range(2):
            self.assertEqual(self.cli("--server", self.replica_list(), "predict", "--model", "m", "--input", query,
                                      "--seed", 3), one)
        self.assertIn("m", self.cli("--server", "ipv4:" + self.replica_list(), "models"))
        _, err = self.cli_fails("--server", "localhost:1,localhost:2", "models")
        self.assertIn("several addresses must each be IPv4:PORT", err)
        self.assertIn("dns:///", err)


if __name__ == "__main__":
    sys.exit(it.main())
