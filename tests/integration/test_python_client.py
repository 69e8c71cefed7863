"""The Python package (python/ember_client, docs/client-python.md) against real emberd
processes: imported from the source tree (its stubs generated into a cache directory at
import), sync and asyncio. Its answers equal `ember predict` / `ember sample` on the same
checkpoint and seed; models and info; errors as EmberError with gRPC codes (before the call
for bad input); TLS, client certificates and tokens; a list target over two replicas that
rides over one of them stopping; the control-loop example; and the package built as a wheel
and an sdist offline, whose stubs are generated at build time and used when installed."""
import asyncio
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import zipfile

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import f7  # noqa: E402
from test_auth import make_pki  # noqa: E402

import grpc  # noqa: E402

try:
    import numpy as np  # noqa: E402
except ImportError as e:  # not Debian's python3 with python3-numpy
    print("cannot import numpy (%s): install python3-numpy (deploy/install-deps.sh)" % e)
    print("0 passed, 1 failed")
    sys.exit(1)

ec = None  # the ember_client package, imported from the source tree by setUpModule
SC = grpc.StatusCode


def setUpModule():
    global ec
    os.environ["EMBER_CLIENT_CACHE"] = os.path.join(it.SCRATCH, "client-cache")
    sys.path.insert(0, os.path.join(it.SOURCE, "python"))
    import ember_client
    ec = ember_client


def format_predict(p, names):
    """A Prediction as `ember predict --energy` prints it."""
    out = [",".join(names) + ",energy"]
    for y, e in zip(p.y, p.energy):
        out.append(",".join(f7(v) for v in y) + "," + f7(e))
    return "\n".join(out) + "\n"


def format_sample(rows, names):
    """Sample's modes as `ember sample` prints them."""
    out = ["row,rank,energy,weight" + "".join("," + n for n in names)]
    for i, modes in enumerate(rows):
        for r, m in enumerate(modes):
            out.append("%d,%d,%s,%s" % (i, r, f7(m.energy), "%.5g" % m.weight) + "".join("," + f7(v) for v in m.y))
    return "\n".join(out) + "\n"


class PythonClient(it.EmberTest):
    trained = None  # the class's models, trained by the first test's setUp (a failure there is a test's)

    def setUp(self):
        super().setUp()
        cls = type(self)
        if cls.trained is None:
            d = os.path.join(it.SCRATCH, "models")
            os.makedirs(d, exist_ok=True)
            cls.data = it.jump_data(os.path.join(d, "jump.csv"), n=300)
            two = it.two_out_data(os.path.join(d, "two.csv"), n=200)
            cls.src_repo = os.path.join(d, "repo")
            cls.jump = self.train(os.path.join(cls.src_repo, "jump", "1.safetensors"), cls.data, seed=3, steps=40)
            cls.two = self.train(os.path.join(cls.src_repo, "two", "1.safetensors"), two, "--y-dim", 2, seed=4,
                                 steps=40)
            rng = random.Random(11)
            cls.x2 = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(6)]
            cls.x1 = [[it.grid_value(rng)] for _ in range(5)]
            cls.q2 = it.write_csv(os.path.join(d, "q2.csv"), ["a", "b"], cls.x2)
            cls.q1 = it.write_csv(os.path.join(d, "q1.csv"), ["a"], cls.x1)
            cls.trained = True
        self.repo = os.path.join(self.tmp, "repo")
        shutil.copytree(self.src_repo, self.repo)

    def client(self, target, **kw):
        kw.setdefault("options", [("grpc.enable_http_proxy", 0)])
        kw.setdefault("timeout", it.RPC_TIMEOUT)
        c = ec.Client(target, **kw)
        self.addCleanup(c.close)
        return c

    def raises(self, code, fn, *needles):
        with self.assertRaises(ec.EmberError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.code, code, str(e))
        self.assertTrue(str(e).startswith(code.name + ": "), str(e))
        for n in needles:
            self.assertIn(n, e.details)
        return e

    def test_stubs_generated_at_import_into_the_cache(self):
        made = glob.glob(os.path.join(os.environ["EMBER_CLIENT_CACHE"], "gen-*", "ember_pb2.py"))
        self.assertEqual(len(made), 1, made)
        self.assertTrue(ec._stubs.pb.__file__.startswith(os.environ["EMBER_CLIENT_CACHE"]))
        self.assertFalse(os.path.exists(os.path.join(it.SOURCE, "python", "ember_client", "_gen")),
                         "nothing is generated into the source tree")
        # the package's messages and the harness's, generated from the same file, share a process
        self.assertIs(ec._stubs.pb.PredictRequest.DESCRIPTOR, it.pb.PredictRequest.DESCRIPTOR)

    def test_predict_equals_cli(self):
        srv = self.start("--models", self.repo, "--workers", 2)
        c = self.client(srv.target, model="jump")
        for seed in (0, 7, 123456789012):
            local = self.cli("predict", "--model", self.jump, "--input", self.q2, "--seed", seed, "--energy")
            p = c.predict_full(np.array(self.x2), seed=seed)  # float64 in, converted
            self.assertEqual(p.y.shape, (6, 1))
            self.assertEqual(p.y.dtype, np.float32)
            self.assertEqual(p.version, 1)
            self.assertEqual(p.x_max_abs_z.shape, (6,))
            self.assertEqual(format_predict(p, ["y0"]), local, "seed %d" % seed)
            np.testing.assert_array_equal(c.predict(self.x2, seed=seed), p.y)
        # options, a second model named per call, y_dim 2
        local = self.cli("predict", "--model", self.two, "--input", self.q1, "--seed", 5, "--samples", 96,
                         "--iters", 4, "--sigma", 0.25, "--shrink", 0.75, "--temperature", 0.5, "--energy")
        p = c.predict_full(np.array(self.x1, dtype=np.float32), "two", version=1, seed=5, samples=96, iterations=4,
                           sigma=0.25, shrink=0.75, temperature=0.5)
        self.assertEqual(p.y.shape, (5, 2))
        self.assertEqual(format_predict(p, ["y0", "y1"]), local)
        # one row (x_dim,) gives one answer (y_dim,); row_offset picks the row's random stream
        whole = c.predict_full(self.x2, seed=9)
        for i in (0, 3):
            one = c.predict_full(np.array(self.x2[i]), seed=9, row_offset=i)
            self.assertEqual(one.y.shape, (1,))
            self.assertEqual(one.y[0], whole.y[i, 0])
            self.assertEqual(one.energy, whole.energy[i])
            self.assertIsInstance(one.x_max_abs_z, float)
        srv.stop_clean(self)

    def test_sample_equals_cli(self):
        srv = self.start("--models", self.repo)
        c = self.client(srv.target)
        for extra, kw in (((), {}), (("--modes", 3, "--min-mass", 0, "--polish", 2), dict(modes=3, min_mass=0,
                                                                                          polish_steps=2))):
            local = self.cli("sample", "--model", self.jump, "--input", self.q2, "--seed", 3, *extra)
            rows = c.sample(self.x2, "jump", seed=3, **kw)
            self.assertEqual(len(rows), 6)
            self.assertEqual(format_sample(rows, ["y0"]), local, kw)
            self.assertTrue(all(m.y.shape == (1,) and m.y.dtype == np.float32 for r in rows for m in r))
        full = c.sample_full(self.x1[0], "two", seed=1, samples=32, return_samples=True)
        self.assertEqual(full.samples.shape, (32, 2))
        self.assertEqual(full.sample_energy.shape, (32,))
        self.assertGreaterEqual(len(full.modes), 1)
        self.assertEqual(full.modes[0].y.shape, (2,))
        self.assertEqual(full.version, 1)
        srv.stop_clean(self)

    def test_models_and_info(self):
        srv = self.start("--models", self.repo)
        c = self.client(srv.target)
        c.predict(self.x1, "two")
        self.assertEqual(sorted(m.name for m in c.models()), ["jump", "two"])
        info = c.info("two")
        self.assertEqual((info.name, info.method, info.x_dim, info.y_dim), ("two", "dfo", 1, 2))
        self.assertEqual((info.version, info.versions, info.default_version, info.pinned_version), (1, [1], 1, 0))
        self.assertEqual((info.x_names, info.y_names), (["a"], ["y0", "y1"]))
        self.assertEqual(info.width, 32)
        self.assertEqual(info.y_lo.shape, (2,))
        self.assertTrue((info.y_lo < info.y_hi).all())
        self.assertEqual(info.defaults["samples"], 256)  # self.train's --samples
        self.assertEqual(info.defaults["seed"], 0)
        self.assertNotIn("langevin", info.defaults)
        self.assertEqual((info.stats["requests"], info.stats["ok"]), (1, 1))
        self.assertEqual(info.load_errors, [])
        self.assertEqual(self.client(srv.target, model="jump").info().x_dim, 2)  # the client's model
        srv.stop_clean(self)

    def test_errors(self):
        srv = self.start("--models", self.repo)
        c = self.client(srv.target, model="jump")
        self.raises(SC.NOT_FOUND, lambda: c.predict(self.x2, "nope"), "nope")
        self.raises(SC.NOT_FOUND, lambda: c.info("nope"))
        self.raises(SC.NOT_FOUND, lambda: c.predict(self.x2, version=9))
        # a width the model does not take: the server checks rows x x_dim (rows is sent)
        self.raises(SC.INVALID_ARGUMENT, lambda: c.predict(np.zeros((2, 3))), "6 values", "x_dim 2", "rows 2")
        self.raises(SC.INVALID_ARGUMENT, lambda: c.predict(self.x2, samples=10 ** 9), "samples")
        # refused before sending: the same checks against a server that is not there
        dead = self.client("127.0.0.1:1", model="jump")
        for bad, needle in ((np.zeros((2, 2, 2)), "shape"), (np.zeros((0, 2)), "empty"), ([[1, float("nan")]], "x[0, 1]"),
                            ([1e39, 0.0], "float32"), (["a", "b"], "dtype"), ([[1, 2], [3]], "x must")):
            e = self.raises(SC.INVALID_ARGUMENT, lambda: dead.predict(bad), needle)
            self.assertIsInstance(e, ec.InvalidInput)
            self.assertIsInstance(e, ValueError)
        for kw, needle in ((dict(samples=0), "samples=0"), (dict(sigma=0.0), "sigma=0"), (dict(seed=-1), "seed"),
                           (dict(iterations=2.5), "iterations"), (dict(langevin={"steps": 3}), "no option"),
                           (dict(timeout=0), "timeout")):
            self.raises(SC.INVALID_ARGUMENT, lambda: dead.predict([0.0, 0.0], **kw), needle)
        self.raises(SC.INVALID_ARGUMENT, lambda: ec.Client("a:1,b:2"), "dns:///")
        self.raises(SC.INVALID_ARGUMENT, lambda: ec.Client("127.0.0.1:1", token="two words"), "token")
        self.raises(SC.INVALID_ARGUMENT, lambda: dead.predict([0.0, 0.0], model=""), "no model")
        # nothing listens there: gRPC's UNAVAILABLE, at once (one address fails fast)
        self.raises(SC.UNAVAILABLE, lambda: dead.predict([0.0, 0.0]))
        # a Langevin option for a DFO model, modes of an explicit model: the server's codes
        self.raises(SC.INVALID_ARGUMENT, lambda: c.predict(self.x2, langevin={"chain_steps": 5}), "angevin")
        mse = self.train(os.path.join(self.repo, "flat", "1.safetensors"), self.data,
                         "--method", "mse", steps=20)
        self.assertTrue(os.path.exists(mse))
        it.wait_until("the mse model", lambda: "flat" in [m.name for m in c.models()])
        self.raises(SC.FAILED_PRECONDITION, lambda: c.sample(self.x2, "flat"))
        # the deadline: a request that computes for about 1.5 s, given 0.2 s
        slow = it.slow_request(srv.stub, "jump", [0.5, 0.25])
        self.raises(SC.DEADLINE_EXCEEDED, lambda: c.predict([0.5, 0.25], samples=slow.options.samples,
                                                            iterations=slow.options.iterations, timeout=0.2))
        srv.stop_clean(self)

    def test_asyncio(self):
        srv = self.start("--models", self.repo, "--workers", 2)
        sync = self.client(srv.target, model="jump").predict_full(self.x2, seed=4)
        slow = it.slow_request(srv.stub, "jump", [0.5, 0.25])

        async def run():
            async with ec.AsyncClient(srv.target, model="jump", timeout=it.RPC_TIMEOUT,
                                      options=[("grpc.enable_http_proxy", 0)]) as c:
                # several in flight at once on one channel
                got = await asyncio.gather(*(c.predict_full(self.x2, seed=4) for _ in range(4)),
                                           c.sample(self.x2, seed=3), c.models(), c.info("two"))
                for p in got[:4]:
                    np.testing.assert_array_equal(p.y, sync.y)
                    np.testing.assert_array_equal(p.energy, sync.energy)
                self.assertEqual(format_sample(got[4], ["y0"]),
                                 self.cli("sample", "--model", self.jump, "--input", self.q2, "--seed", 3))
                self.assertEqual(sorted(m.name for m in got[5]), ["jump", "two"])
                self.assertEqual(got[6].y_dim, 2)
                one = await c.predict(np.array(self.x1[0]), "two", seed=2)
                self.assertEqual(one.shape, (2,))
                with self.assertRaises(ec.EmberError) as cm:
                    await c.predict(self.x2, "nope")
                self.assertEqual(cm.exception.code, SC.NOT_FOUND)
                with self.assertRaises(ec.InvalidInput):
                    await c.predict(np.zeros((2, 2, 2)))
                with self.assertRaises(ec.EmberError) as cm:
                    await c.predict([0.5, 0.25], samples=slow.options.samples, iterations=slow.options.iterations,
                                    timeout=0.2)
                self.assertEqual(cm.exception.code, SC.DEADLINE_EXCEEDED)

        asyncio.run(run())
        srv.stop_clean(self)

    def test_tls_client_certificates_and_token(self):
        pki = make_pki(os.path.join(self.tmp))
        tokens = os.path.join(self.tmp, "tokens")
        with open(tokens, "w") as f:
            f.write("tok-python-0123456789\n")
        os.chmod(tokens, 0o600)
        srv = self.start("--models", self.repo, "--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"],
                         "--tls-client-ca", pki["ca.pem"], "--token-file", tokens,
                         creds=grpc.ssl_channel_credentials(it_read(pki["ca.pem"]), it_read(pki["client.key"]),
                                                            it_read(pki["client.pem"])))
        cert = dict(tls=pki["ca.pem"], tls_cert=pki["client.pem"], tls_key=pki["client.key"])
        c = self.client(srv.target, model="jump", token="tok-python-0123456789", **cert)
        local = self.cli("predict", "--model", self.jump, "--input", self.q2, "--seed", 1, "--energy")
        self.assertEqual(format_predict(c.predict_full(self.x2, seed=1), ["y0"]), local)
        self.raises(SC.UNAUTHENTICATED, lambda: self.client(srv.target, model="jump", **cert).predict(self.x2))
        self.raises(SC.PERMISSION_DENIED, lambda: self.client(srv.target, model="jump", token="wrong", **cert).models())
        self.raises(SC.UNAVAILABLE, lambda: self.client(srv.target, token="tok-python-0123456789").models())
        self.raises(SC.INVALID_ARGUMENT, lambda: ec.Client(srv.target, tls_cert=pki["client.pem"]), "go together")
        self.raises(SC.INVALID_ARGUMENT, lambda: ec.Client(srv.target, tls=os.path.join(self.tmp, "none.pem")),
                    "cannot read")
        srv.stop_clean(self)

    def test_list_target_over_two_replicas(self):
        a = self.start("--models", self.repo)
        b = self.start("--models", self.repo)
        c = self.client("%s,%s" % (a.target, b.target), model="jump")
        self.assertTrue(c.cluster)
        want = c.predict_full(self.x2, seed=6)
        counts = [self.client(srv.target) for srv in (a, b)]

        def both_answered():  # round robin over both, once both are connected; same answers
            np.testing.assert_array_equal(c.predict(self.x2, seed=6), want.y)
            return all(cc.info("jump").stats["requests"] > 0 for cc in counts)
        it.wait_until("calls on both replicas", both_answered)
        # one replica stops: every call still succeeds, on the other
        a.stop_clean(self)
        before = self.client(b.target).info("jump").stats["requests"]
        for _ in range(6):
            np.testing.assert_array_equal(c.predict(self.x2, seed=6), want.y)
        self.assertEqual(self.client(b.target).info("jump").stats["requests"], before + 6)
        b.stop_clean(self)

    def test_control_loop_example(self):
        srv = self.start("--models", self.repo)
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "grpc_proxy")}
        r = subprocess.run([sys.executable, "-B", os.path.join(it.SOURCE, "python", "examples", "control_loop.py"),
                            "--target", srv.target, "--model", "jump", "--hz", "50", "--seconds", "1", "--warmup",
                            "3", "--deadline-ms", str(5000 * it.SCALE), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=it.CLI_TIMEOUT, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = json.loads(r.stdout)
        self.assertEqual(s["ticks"] + s["skipped_ticks"], 50, s)
        self.assertGreater(s["ticks"], 0)
        self.assertEqual((s["failures"], s["missed_deadlines"]), ({}, 0), s)
        self.assertTrue(0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"], s)
        # Predicts: the 3 warmup ticks and every tick run (info() is a GetModel, not counted)
        self.assertEqual(self.client(srv.target).info("jump").stats["requests"], 3 + s["ticks"], s)
        srv.stop_clean(self)

    def test_package_builds_offline_with_stubs(self):
        try:
            import pip  # noqa: F401
        except ImportError:
            self.fail("python3 -m pip is missing: install python3-pip (deploy/install-deps.sh)")
        # a copy of what the build reads, so that the build's own files stay out of the tree
        src = os.path.join(self.tmp, "src")
        shutil.copytree(os.path.join(it.SOURCE, "python"), os.path.join(src, "python"),
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "dist"))
        shutil.copytree(os.path.join(it.SOURCE, "proto"), os.path.join(src, "proto"))
        shutil.copytree(os.path.join(it.SOURCE, "deploy", "grpc"), os.path.join(src, "deploy", "grpc"))
        pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--disable-pip-version-check", "-q"]
        env = dict(os.environ, PIP_NO_CACHE_DIR="1")

        def run(cmd, cwd):
            r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=it.CLI_TIMEOUT, env=env)
            self.assertEqual(r.returncode, 0, "%s:\n%s" % (" ".join(cmd), r.stdout))

        # the sdist (from the tree: proto and service config copied in), then a wheel from it
        sdist = os.path.join(self.tmp, "sdist")
        run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])",
             sdist], os.path.join(src, "python"))
        (tarball,) = glob.glob(os.path.join(sdist, "*.tar.gz"))
        with tarfile.open(tarball) as t:
            names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
        for want in ("proto/ember/v1/ember.proto", "deploy/grpc/service-config.json", "ember_client/client.py",
                     "setup.py", "pyproject.toml"):
            self.assertIn(want, names)
        self.assertFalse([n for n in names if "_gen" in n], "no generated file in the sdist")
        wheels = os.path.join(self.tmp, "wheels")
        run(pip + ["-w", wheels, tarball], self.tmp)

        srv = self.start("--models", self.repo)
        want = self.client(srv.target, model="jump").predict(self.x2, seed=2).tolist()
        (whl,) = glob.glob(os.path.join(wheels, "ember_client-*.whl"))
        with zipfile.ZipFile(whl) as z:
            names = set(z.namelist())
            for gen in ("ember_client/_gen/ember_pb2.py", "ember_client/_gen/service_config.json",
                        "ember_client/_gen/__init__.py"):
                self.assertIn(gen, names)
            site = os.path.join(wheels, "site")
            z.extractall(site)
        # installed, it uses the built stubs: the cache stays empty
        cache = os.path.join(wheels, "cache")
        code = ("import sys, json, ember_client as e\n"
                "assert e.__file__.startswith(sys.argv[1]), e.__file__\n"
                "c = e.Client(sys.argv[2], model='jump', options=[('grpc.enable_http_proxy', 0)])\n"
                "print(json.dumps(c.predict(json.loads(sys.argv[3]), seed=2).tolist()))\n")
        r = subprocess.run([sys.executable, "-B", "-c", code, site, srv.target, json.dumps(self.x2)],
                           cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=it.CLI_TIMEOUT, env=dict(os.environ, PYTHONPATH=site, EMBER_CLIENT_CACHE=cache))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), want)
        self.assertFalse(os.path.exists(cache), "the installed package generated stubs at import")
        srv.stop_clean(self)


def it_read(path):
    with open(path, "rb") as f:
        return f.read()


if __name__ == "__main__":
    sys.exit(it.main())
