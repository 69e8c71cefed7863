"""libember_client (client/lib/, ember/client.h) against a real emberd: the answers of Predict and
Sample equal local `ember predict` and `ember sample` for the same seed, GetModel and ListModels,
error codes and messages, one client used from several threads, calls that keep succeeding
while the replicas behind a list target are restarted one after the other, and the library
installed into a scratch prefix and used by the control-loop example built through pkg-config.

The C side is tests/client_it.c (EMBER_CLIENT_IT, set by tests/CMakeLists.txt with the build
directory, cmake, the compiler and the sanitizer flags the install test needs)."""
import glob
import os
import random
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

CLIENT_IT = os.environ.get("EMBER_CLIENT_IT")


class ClientC(it.EmberTest):
    models = None  # (jump, two): trained once, for every test

    def setUp(self):
        super().setUp()
        self.assertTrue(CLIENT_IT, "EMBER_CLIENT_IT is not set (tests/CMakeLists.txt sets it)")
        if ClientC.models is None:
            data = it.jump_data(os.path.join(it.SCRATCH, "jump.csv"))
            two = it.two_out_data(os.path.join(it.SCRATCH, "two.csv"))
            ClientC.models = (self.train(os.path.join(it.SCRATCH, "jump.safetensors"), data, seed=3),
                              self.train(os.path.join(it.SCRATCH, "two.safetensors"), two, "--y-dim", 2, seed=5))
        self.repo = os.path.join(self.tmp, "repo")
        self.jump = os.path.join(self.repo, "jump", "2.safetensors")
        self.two = os.path.join(self.repo, "two", "1.safetensors")
        for src, dst in zip(ClientC.models, (self.jump, self.two)):
            os.makedirs(os.path.dirname(dst))
            self.publish(src, dst)
        rng = random.Random(3)
        self.q2 = it.write_csv(os.path.join(self.tmp, "q2.csv"), ["a", "b"],
                               [[it.grid_value(rng), it.grid_value(rng)] for _ in range(9)])
        self.q1 = it.write_csv(os.path.join(self.tmp, "q1.csv"), ["a"], [[it.grid_value(rng)] for _ in range(5)])

    def client(self, target, *args, ok=True):
        r = subprocess.run([CLIENT_IT, target] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=it.CLI_TIMEOUT)
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        if ok:
            self.assertEqual(r.returncode, 0, "client_it %s: %s" % (" ".join(map(str, args)), r.stderr))
        return r.stdout

    def test_answers_equal_local(self):
        srv = self.start("--models", self.repo)
        for name, path, q in (("jump", self.jump, self.q2), ("two", self.two, self.q1)):
            local = self.cli("predict", "--model", path, "--input", q, "--energy", "--seed", 17)
            self.assertEqual(self.client(srv.target, "predict", name, 17, q), local)
            local = self.cli("sample", "--model", path, "--input", q, "--seed", 4, "--modes", 3)
            self.assertEqual(self.client(srv.target, "sample", name, 4, q, 3), local)
        info = dict(l.split("=", 1) for l in self.client(srv.target, "info", "two").splitlines())
        self.assertEqual((info["name"], info["version"], info["default_version"], info["versions"]),
                         ("two", "1", "1", "1"))
        self.assertEqual((info["method"], info["arch"], info["width"], info["x_dim"], info["y_dim"]),
                         ("dfo", "resnet", "32", "1", "2"))
        self.assertEqual((info["x_names"], info["y_names"]), ("a", "y0,y1"))
        self.assertEqual(info["samples"], "256")
        self.assertEqual(len(info["y_lo"].split(",")), 2)
        self.assertEqual(self.client(srv.target, "list"), "jump 2\ntwo 1\n")
        srv.stop_clean(self)

    def test_errors(self):
        srv = self.start("--models", self.repo, "--max-samples", 8192)
        out = self.client(srv.target, "errors", "jump", 2)
        got = {}
        for line in out.splitlines():
            case, code, origin = line.split(" ", 3)[:3]
            got[case] = (code, origin.rstrip(":"), line.split(": ", 1)[1] if ": " in line else "")
        self.assertEqual(got["get_unknown"][:2], ("NOT_FOUND", "server"), out)
        self.assertIn("no-such-model", got["get_unknown"][2])
        self.assertEqual(got["predict_unknown"][:2], ("NOT_FOUND", "server"), out)
        self.assertEqual(got["predict_version"][:2], ("NOT_FOUND", "server"), out)
        self.assertEqual(got["predict_width"][:2], ("INVALID_ARGUMENT", "server"), out)
        self.assertIn("x has 3 values", got["predict_width"][2])
        self.assertIn("x_dim 2", got["predict_width"][2])
        self.assertEqual(got["predict_ydim"][:2], ("INVALID_ARGUMENT", "client"), out)
        self.assertIn("y_dim is 1", got["predict_ydim"][2])
        self.assertEqual(got["predict_nan"][:2], ("INVALID_ARGUMENT", "server"), out)
        self.assertEqual(got["predict_samples"][:2], ("INVALID_ARGUMENT", "server"), out)
        self.assertIn("samples", got["predict_samples"][2])
        self.assertEqual(got["predict_deadline"][:2], ("DEADLINE_EXCEEDED", "server"), out)
        self.assertEqual(got["predict_norows"][:2], ("INVALID_ARGUMENT", "client"), out)
        self.assertEqual(got["open_list"][:2], ("INVALID_ARGUMENT", "client"), out)
        self.assertIn("several addresses must each be IPv4:PORT", got["open_list"][2])
        self.assertEqual(got["open_ca"][:2], ("INVALID_ARGUMENT", "client"), out)
        self.assertIn("tls_ca_file /nonexistent/ca.pem: cannot open", got["open_ca"][2])
        self.assertEqual(got["unreachable"][:2], ("UNAVAILABLE", "unreachable"), out)
        self.assertIn("could not reach 127.0.0.1:1", got["unreachable"][2])
        srv.stop_clean(self)

    def test_threads(self):
        srv = self.start("--models", self.repo)
        out = self.client(srv.target, "threads", "jump", self.q2, 6, 8)
        self.assertEqual(out, "threads=6 calls=48 errors=0 mismatches=0\n")
        srv.stop_clean(self)

    def test_replica_restart(self):
        """Two replicas behind a list target; each in turn stops (SIGTERM) and the first comes
        back on its port: the control loop on the other side loses no call."""
        ports = [it.free_port(), it.free_port()]
        args = [("--models", self.repo, "--listen", "127.0.0.1:%d" % p, "--workers", 1) for p in ports]
        reps = [self.start(*a) for a in args]
        stop = os.path.join(self.tmp, "stop")
        proc = subprocess.Popen([CLIENT_IT, ",".join("127.0.0.1:%d" % p for p in ports), "loop", "jump", stop],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()

        def calls():
            done = [int(l[2:]) for l in list(lines) if l.startswith("n=")]
            return done[-1] if done else 0

        def advance(by):
            target = calls() + by
            it.wait_until("the loop to make %d calls" % target, lambda: calls() >= target, timeout=60 * it.SCALE)

        advance(20)
        reps[0].stop_clean(self)       # the first replica goes away...
        advance(30)
        reps[0] = self.start(*args[0])  # ... and comes back on its port
        advance(30)
        reps[1].stop_clean(self)       # now the second: every call must reach the first
        advance(30)
        open(stop, "w").close()
        err = proc.stderr.read()
        self.assertEqual(proc.wait(timeout=it.CLI_TIMEOUT), 0, err)
        reader.join(timeout=10)
        self.assertRegex(lines[-1], r"^calls=\d+ failed=0$")
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        reps[0].stop_clean(self)

    def test_install_pkg_config(self):
        """make install's client part into a scratch prefix; the control-loop example compiled
        by the C compiler with nothing but pkg-config's flags, then run against emberd."""
        prefix = os.path.join(self.tmp, "prefix")
        subprocess.run([os.environ["EMBER_CMAKE"], "--install", os.environ["EMBER_BUILD_DIR"], "--prefix", prefix,
                        "--component", "client"], check=True, stdout=subprocess.PIPE, timeout=120)
        pcs = glob.glob(os.path.join(prefix, "**", "pkgconfig", "ember-client.pc"), recursive=True)
        self.assertEqual(len(pcs), 1, pcs)
        self.assertTrue(os.path.exists(os.path.join(prefix, "include", "ember", "client.h")))
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "ember-client"], env=env, check=True,
                               stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
        self.assertIn("-lember_client", flags)
        libdir = [f[2:] for f in flags if f.startswith("-L")][0]
        self.assertTrue(os.path.exists(os.path.join(libdir, "libember_client.so")), libdir)
        exe = os.path.join(self.tmp, "control_loop")
        src = os.path.join(it.SOURCE, "client", "examples", "control_loop.c")
        san = os.environ.get("EMBER_SAN_FLAGS", "").split()
        r = subprocess.run([os.environ.get("EMBER_CC", "cc"), "-std=c11", "-Wall", "-Wextra", "-Werror", *san, src,
                            "-o", exe, *flags, "-lm"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout)
        srv = self.start("--models", self.repo)
        r = subprocess.run([exe, "--target", srv.target, "--model", "jump", "--hz", "50", "--n", "20", "--samples", "64"],
                           env=dict(os.environ, LD_LIBRARY_PATH=libdir), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=it.CLI_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^steps=20 hz=50 ok=20 failed=0 missed=\d+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ "
                                   r"max_ms=[0-9.]+\n$")
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
