"""Shared helpers for the emberd integration tests (tests/integration/test_*.py).

Each test script is run by CTest as

    /usr/bin/python3 test_X.py --emberd PATH --ember PATH --source DIR [unittest names...]

and ends with `sys.exit(ember_it.main())`. main() generates the Python gRPC stubs into a
scratch directory (from proto/ember/v1/ember.proto and Debian's grpc-proto health and
reflection protos), runs the script's unittest cases, prints one line per test and a last
line "N passed, N failed", and exits non-zero when anything failed. The scratch directory
(under $EMBER_TEST_TMP) is removed when everything passed and kept, with emberd's logs, when
something failed.

Only /usr/bin/python3 with Debian's python3-grpcio and python3-grpc-tools and the standard
library are used. Every wait is bounded: RPCs carry timeouts, process waits have timeouts, and
polling loops give up after a deadline.

What a test gets from EmberTest:
    self.tmp                      a fresh scratch directory for this test
    self.train(out, data, ...)    `ember train ... --quiet` (small networks)
    self.cli(args...)             runs the ember CLI, returns stdout (asserts exit 0)
    self.start(args..., creds=None, env=None, preexec_fn=None)
                                  an Emberd on 127.0.0.1:<free port> (--drain-ms 0 unless given);
                                  killed at cleanup if the test did not stop it; creds: TLS
                                  channel credentials for its .channel (a TLS server); env:
                                  variables added to its environment (EMBER_FAULT_* hooks);
                                  preexec_fn: run in the child before exec (resource limits)
    srv.stop_clean(self)          SIGTERM, wait, assert exit 0 and no sanitizer report
    self.expect(fn, req, code, *needles)   an RPC must fail with `code`, details containing
                                  every needle
"""
import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

# An idle grpcio channel reads its socket only when grpc core's client backup poller runs
# (every 5 s by default), so it would notice emberd's GOAWAY at shutdown up to 5 s late and
# emberd's graceful shutdown would wait for it. Poll every 100 ms instead (read at grpc init).
os.environ.setdefault("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "100")

try:
    import grpc  # noqa: E402
except ImportError as e:  # not Debian's python3 with python3-grpcio
    print("cannot import grpc (%s): run these tests with /usr/bin/python3 and install python3-grpcio "
          "and python3-grpc-tools (deploy/install-deps.sh)" % e)
    print("0 passed, 1 failed")
    sys.exit(1)

EMBERD = EMBER = SOURCE = None
SCRATCH = None  # this run's scratch directory

# generated modules, filled in by main(): ember.v1, grpc.health.v1, grpc.reflection.v1 and v1alpha,
# and inference (the Open Inference Protocol v2, proto/inference/v2/grpc_service.proto)
pb = pbg = hpb = hpbg = rpb = rpbg = rapb = rapbg = kpb = kpbg = None
GRPC_PROTO = "/usr/share/grpc-proto/grpc"  # Debian's grpc-proto

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error", "WARNING: ThreadSanitizer")

# Slow builds stretch every wait by EMBER_TEST_TIMEOUT_SCALE (the ThreadSanitizer build, `make
# tsan`, sets it: instrumented training and inference run several times slower).
SCALE = float(os.environ.get("EMBER_TEST_TIMEOUT_SCALE", "1"))
RPC_TIMEOUT = 30.0 * SCALE     # seconds: default deadline for every RPC the tests make
START_TIMEOUT = 60.0 * SCALE   # emberd printing its port
EXIT_TIMEOUT = 60.0 * SCALE    # emberd exiting after SIGTERM (sanitized builds check leaks at exit)
CLI_TIMEOUT = 120.0 * SCALE    # one ember CLI run


# ---- stubs ---------------------------------------------------------------------------------

def _generate_stubs(dest):
    """protoc the ember, v2 inference, health and reflection protos into dest and import them."""
    global pb, pbg, hpb, hpbg, rpb, rpbg, rapb, rapbg, kpb, kpbg
    proto_dir = os.path.join(SOURCE, "proto")
    # A generated package called grpc/ would shadow the grpcio module, so Debian's grpc-proto
    # files are generated from copies under other directory names (their proto packages stay
    # grpc.health.v1, grpc.reflection.v1 and grpc.reflection.v1alpha).
    hp = os.path.join(dest, "hp")
    copies = (("health/v1/health.proto", "healthv1/health.proto"),
              ("reflection/v1/reflection.proto", "reflectionv1/reflection.proto"),
              ("reflection/v1alpha/reflection.proto", "reflectionv1alpha/reflection.proto"))
    for src, dst in copies:
        os.makedirs(os.path.dirname(os.path.join(hp, dst)), exist_ok=True)
        shutil.copy(os.path.join(GRPC_PROTO, src), os.path.join(hp, dst))
    out = os.path.join(dest, "py")
    os.makedirs(out)
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I" + proto_dir, "-I" + hp,
           "--python_out=" + out, "--grpc_python_out=" + out,
           "ember/v1/ember.proto", "inference/v2/grpc_service.proto"] + [dst for _, dst in copies]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("protoc failed: %s\n%s" % (" ".join(cmd), r.stdout.decode(errors="replace")))
    sys.path.insert(0, out)
    from ember.v1 import ember_pb2, ember_pb2_grpc  # noqa: E402
    from inference.v2 import grpc_service_pb2, grpc_service_pb2_grpc  # noqa: E402
    from healthv1 import health_pb2, health_pb2_grpc  # noqa: E402
    from reflectionv1 import reflection_pb2, reflection_pb2_grpc  # noqa: E402
    from reflectionv1alpha import reflection_pb2 as ra_pb2, reflection_pb2_grpc as ra_pb2_grpc  # noqa: E402
    pb, pbg, hpb, hpbg = ember_pb2, ember_pb2_grpc, health_pb2, health_pb2_grpc
    rpb, rpbg, rapb, rapbg = reflection_pb2, reflection_pb2_grpc, ra_pb2, ra_pb2_grpc
    kpb, kpbg = grpc_service_pb2, grpc_service_pb2_grpc


# ---- data and formatting --------------------------------------------------------------------

def free_port(_rng=random.Random(os.getpid()), _given=set()):
    """A free port below the kernel's ephemeral range: the balancers' configs and a restarted
    replica need ports fixed in advance, and a port the kernel hands out (bind to 0) can be
    handed to another test's process before the replica binds it (seen in the suite: "address
    already in use"). Ports below the range are never handed out that way. A port is never
    given twice: one still free now may be one this test chose earlier and has not yet bound
    (seen once: a replica's gRPC port equal to another's metrics port)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(1000):
        port = _rng.randrange(max(1024, low - 12000), low)
        if port in _given:
            continue
        _given.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below %d" % low)


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(repr(float(v)) for v in r) + "\n")
    return path


def grid_value(rng, lo=-1.0, hi=1.0, steps=256):
    """A random value on a grid of binary fractions: exactly representable in float32, so the
    CLI (strtof) and protobuf (double -> float) see the very same number."""
    k = rng.randrange(steps + 1)
    return lo + (hi - lo) * k / steps


def jump_data(path, n=400, seed=1):
    """x = (a, b), y = (1 if a > 0 else -1) + 0.5 b: x_dim 2, y_dim 1, a jump at a = 0. The
    header marks y (`ember train` never guesses) and names it y0, as the default would."""
    import random
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = grid_value(rng), grid_value(rng)
        rows.append((a, b, (1.0 if a > 0 else -1.0) + 0.5 * b))
    return write_csv(path, ["a", "b", "y:y0"], rows)


def two_out_data(path, n=300, seed=2):
    """x = a, y = (a, 1 - a^2): x_dim 1, y_dim 2 (marked in the header; --y-dim 2 agrees)."""
    import random
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a = grid_value(rng)
        rows.append((a, a, 1.0 - a * a))
    return write_csv(path, ["a", "y:y0", "y:y1"], rows)


def f7(v):
    """C's printf("%.7g", (double)f), which is how the CLI prints y and energies."""
    return "%.7g" % v


def format_predict(resp, y_dim, energy=True, names=None):
    """A PredictResponse as `ember predict [--energy]` prints it (y's columns headed by names,
    the model's y_names, or y0.. as for a model without names)."""
    names = names or ["y%d" % j for j in range(y_dim)]
    out = [",".join(names) + (",energy" if energy else "")]
    rows = len(resp.y) // y_dim
    for i in range(rows):
        cells = [f7(resp.y[i * y_dim + j]) for j in range(y_dim)]
        if energy:
            cells.append(f7(resp.energy[i]))
        out.append(",".join(cells))
    return "\n".join(out) + "\n"


def format_sample(resp, y_dim, names=None):
    """A SampleResponse as `ember sample` prints it."""
    names = names or ["y%d" % j for j in range(y_dim)]
    out = ["row,rank,energy,weight" + "".join("," + n for n in names)]
    for i, row in enumerate(resp.rows):
        for r, m in enumerate(row.modes):
            out.append("%d,%d,%s,%s" % (i, r, f7(m.energy), "%.5g" % m.weight) +
                       "".join("," + f7(v) for v in m.y))
    return "\n".join(out) + "\n"


def call(fn, req, timeout=RPC_TIMEOUT):
    """(code, response or None, details) of one unary call; never raises grpc.RpcError."""
    try:
        return grpc.StatusCode.OK, fn(req, timeout=timeout), ""
    except grpc.RpcError as e:
        return e.code(), None, e.details() or ""


def wait_until(what, pred, timeout=20.0 * SCALE, interval=0.05):
    """Polls pred() until it returns a true value (returned) or timeout (AssertionError)."""
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except grpc.RpcError as e:
            last = "RPC failed: %s %s" % (e.code(), e.details())
            if time.monotonic() > end:
                break
            time.sleep(interval)
            continue
        if last and not isinstance(last, str):
            return last
        if time.monotonic() > end:
            break
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


_seconds_per_iteration = {}


def slow_request(stub, model, x, seconds=1.5):
    """A PredictRequest for `model` that keeps one worker busy for about `seconds`: 65536
    samples per row and as many iterations as that takes on this build and machine (the time
    of an iteration measured once per model name with 2 iterations, through `stub`). x: one or
    more rows."""
    def req(iterations):
        return pb.PredictRequest(model=model, x=list(x),
                                 options=pb.InferenceOptions(samples=65536, iterations=iterations))
    if model not in _seconds_per_iteration:
        t = time.monotonic()
        stub.Predict(req(2), timeout=120 * SCALE)
        _seconds_per_iteration[model] = max(time.monotonic() - t, 1e-3) / 2
    return req(max(2, min(1000, int(seconds / _seconds_per_iteration[model]))))


class Watcher:
    """Reads a server stream (e.g. Health.Watch) on a thread, so that every wait is bounded."""

    def __init__(self, stream):
        import queue
        self.stream = stream
        self.messages = queue.Queue()
        self.end = None  # (code, details) once the stream ended
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for m in self.stream:
                self.messages.put(m)
            self.end = (grpc.StatusCode.OK, "")
        except grpc.RpcError as e:
            self.end = (e.code(), e.details() or "")
        except Exception as e:  # pragma: no cover - reported by next()/wait_end()
            self.end = (None, repr(e))
        self.done.set()

    def next(self, timeout=20.0 * SCALE):
        import queue
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no stream message within %.0fs (ended: %r)" % (timeout, self.end))

    def wait_end(self, timeout=30.0 * SCALE):
        if not self.done.wait(timeout):
            raise AssertionError("the stream did not end within %.0fs" % timeout)
        return self.end

    def cancel(self):
        self.stream.cancel()
        self.done.wait(10)


# ---- emberd -------------------------------------------------------------------------------------

class Emberd:
    """One emberd process on 127.0.0.1 and a channel to it."""

    _count = 0

    def __init__(self, args, workdir, creds=None, env=None, preexec_fn=None):
        Emberd._count += 1
        self.creds = creds  # grpc.ChannelCredentials for a TLS server, None for plaintext
        self.log_path = os.path.join(workdir, "emberd-%d.log" % Emberd._count)
        self.args = [EMBERD, "--listen", "127.0.0.1:0"] + [str(a) for a in args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=workdir,
                                     env=dict(os.environ, **env) if env else None, preexec_fn=preexec_fn)
        self.returncode = None
        self.port = None
        end = time.monotonic() + START_TIMEOUT
        while self.port is None:
            m = re.search(r'msg="serving".* port=(\d+)', self.log())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                self._log.close()
                raise AssertionError("emberd exited with %s before serving:\n%s" %
                                     (self.proc.returncode, self.log()))
            if time.monotonic() > end:
                self.kill()
                raise AssertionError("emberd printed no port= line within %.0fs:\n%s" %
                                     (START_TIMEOUT, self.log()))
            time.sleep(0.02)
        self.target = "127.0.0.1:%d" % self.port
        self.channel = self.new_channel()
        self.stub = pbg.EmberStub(self.channel)
        self.health = hpbg.HealthStub(self.channel)

    def new_channel(self, options=(), creds=None):
        """A ready channel: TLS with creds (default: the server's), else plaintext."""
        creds = creds or self.creds
        opts = [("grpc.enable_http_proxy", 0)] + list(options)
        ch = grpc.secure_channel(self.target, creds, options=opts) if creds else grpc.insecure_channel(self.target, options=opts)
        grpc.channel_ready_future(ch).result(timeout=RPC_TIMEOUT)
        return ch

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=EXIT_TIMEOUT):
        """Waits for exit; kills it and raises AssertionError if it does not exit in time."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("emberd did not exit within %.0fs of SIGTERM:\n%s" %
                                 (timeout, self.log_tail()))
        self._close()
        return self.returncode

    def _close(self):
        try:
            self.channel.close()
        except Exception:
            pass
        if not self._log.closed:
            self._log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close()

    def stop_clean(self, tc, timeout=EXIT_TIMEOUT):
        """SIGTERM (unless already signalled/exited), then assert exit 0 and a clean log."""
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        self.assert_clean(tc, rc)

    def assert_clean(self, tc, rc):
        text = self.log()
        tc.assertEqual(rc, 0, "emberd exit status %s; log tail:\n%s" % (rc, self.log_tail(60)))
        for mark in SANITIZER_MARKS:
            tc.assertNotIn(mark, text, "emberd log has a sanitizer report (%s):\n%s" % (mark, text[-6000:]))


# ---- the test case base ---------------------------------------------------------------------------

class EmberTest(unittest.TestCase):
    """Base class: scratch directory, CLI, servers that are always cleaned up."""

    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=self._testMethodName + "-", dir=SCRATCH)

    # CLI
    def cli(self, *args, input_text=None, timeout=CLI_TIMEOUT):
        r = subprocess.run([EMBER] + [str(a) for a in args], input=input_text, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
        self.assertEqual(r.returncode, 0, "ember %s exited %d: %s" % (" ".join(map(str, args)), r.returncode,
                                                                      r.stderr.strip()))
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        return r.stdout

    def cli_fails(self, *args):
        """Runs the CLI expecting failure: (exit status, stderr); nothing may reach stdout."""
        r = subprocess.run([EMBER] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=CLI_TIMEOUT)
        self.assertNotEqual(r.returncode, 0, args)
        self.assertEqual(r.stdout, "", args)
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        return r.returncode, r.stderr.strip()

    def train(self, out, data, *extra, width=32, steps=80, batch=32, negatives=16, seed=0, samples=256):
        """A small model, written atomically by the CLI; returns out."""
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        self.cli("train", "--data", data, "--out", out, "--width", width, "--steps", steps,
                 "--batch", batch, "--negatives", negatives, "--seed", seed, "--samples", samples,
                 "--threads", 1, "--quiet", *extra)
        return out

    def publish(self, src, dst):
        """Copies src to dst atomically: a temporary name in dst's directory, then rename."""
        tmp = os.path.join(os.path.dirname(dst), ".publish-%d.tmp" % os.getpid())
        shutil.copyfile(src, tmp)
        os.rename(tmp, dst)

    # servers
    def start(self, *args, creds=None, env=None, preexec_fn=None):
        """emberd with these arguments, plus --drain-ms 0 unless they give --drain-ms (the
        500 ms default drain would only slow down tests that do not look at draining).
        creds: grpc.ChannelCredentials for the test's channel to a TLS server; env: variables
        added to emberd's environment; preexec_fn: run in the child before exec."""
        args = list(args)
        if "--drain-ms" not in args:
            args += ["--drain-ms", 0]
        srv = Emberd(args, self.tmp, creds=creds, env=env, preexec_fn=preexec_fn)
        self.addCleanup(srv.kill)
        return srv

    # assertions
    def expect(self, fn, req, code, *needles, timeout=RPC_TIMEOUT):
        got, resp, details = call(fn, req, timeout)
        self.assertEqual(got, code, "expected %s, got %s (%r)" % (code, got, details))
        for n in needles:
            self.assertIn(n, details, "status %s details %r lack %r" % (got, details, n))
        return details


# ---- the runner ---------------------------------------------------------------------------------------

class _Result(unittest.TextTestResult):
    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _line(self, word, test):
        # a failing setUpClass is reported before any test started: no time of its own
        t0 = getattr(self, "_t0", time.monotonic())
        self.stream.write("%-4s %s (%.2fs)\n" % (word, test.id().split(".", 1)[-1], time.monotonic() - t0))
        self.stream.flush()

    def addSuccess(self, test):
        unittest.TestResult.addSuccess(self, test)
        self._line("ok", test)

    def addFailure(self, test, err):
        unittest.TestResult.addFailure(self, test, err)
        self._line("FAIL", test)

    def addError(self, test, err):
        unittest.TestResult.addError(self, test, err)
        self._line("ERR", test)

    def addSkip(self, test, reason):
        unittest.TestResult.addSkip(self, test, reason)
        self._line("skip", test)


def main():
    global EMBERD, EMBER, SOURCE, SCRATCH
    p = argparse.ArgumentParser(description="emberd integration tests")
    p.add_argument("--emberd", required=True, help="the emberd binary under test")
    p.add_argument("--ember", required=True, help="the ember CLI binary")
    p.add_argument("--source", required=True, help="the source tree (for proto/)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("tests", nargs="*", help="test names (Class or Class.method) to run")
    a = p.parse_args()
    EMBERD, EMBER, SOURCE = (os.path.abspath(x) for x in (a.emberd, a.ember, a.source))
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    base = os.environ.get("EMBER_TEST_TMP") or None
    if base:
        os.makedirs(base, exist_ok=True)
    script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    SCRATCH = tempfile.mkdtemp(prefix="integration-%s-" % script, dir=base)
    t0 = time.monotonic()
    try:
        _generate_stubs(os.path.join(SCRATCH, "stubs"))
    except Exception:
        traceback.print_exc()
        print("0 passed, 1 failed (could not generate the gRPC stubs)")
        return 1
    module = sys.modules["__main__"]
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromNames(a.tests, module) if a.tests else loader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=0, resultclass=_Result)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    if failed == 0 and not a.keep:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    else:
        print("scratch directory kept: %s" % SCRATCH)
    extra = ", %d skipped" % len(result.skipped) if result.skipped else ""
    print("%s: %d passed, %d failed%s in %.1fs" % (script, passed, failed, extra, time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and result.testsRun > 0 else 1
