"""ListModels and GetModel: what the repository holds, described correctly; --model FILE;
start-up errors."""
import csv
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402


def column_bounds(path, col, margin=0.05):
    """ember train's sampling bounds for one y column: data min/max widened by margin x range."""
    with open(path) as f:
        vals = [float(r[col]) for r in list(csv.reader(f))[1:]]
    lo, hi = min(vals), max(vals)
    return lo - margin * (hi - lo), hi + margin * (hi - lo)


class Repository(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.repo = r = os.path.join(self.tmp, "repo")
        self.jump = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.two = it.two_out_data(os.path.join(self.tmp, "two.csv"))
        self.train(os.path.join(r, "alpha", "1.safetensors"), self.jump, "--iters", 2, "--sigma", 0.25,
                   "--shrink", 0.75, samples=512, width=32, seed=1)
        self.train(os.path.join(r, "alpha", "3.safetensors"), self.jump, "--arch", "mlp", "--depth", 3,
                   samples=128, width=16, seed=2)
        self.train(os.path.join(r, "beta", "2.safetensors"), self.two, "--y-dim", 2, "--method", "mse",
                   "--arch", "mlp", "--depth", 1, width=16, seed=3)
        os.makedirs(os.path.join(r, "broken"))
        with open(os.path.join(r, "broken", "1.safetensors"), "w") as f:
            f.write("not a checkpoint\n")
        # none of these is a model version: hidden or invalid model names, version 0, other names
        a1 = os.path.join(r, "alpha", "1.safetensors")
        for junk in (".hidden/1.safetensors", "bad name/1.safetensors", "alpha/0.safetensors",
                     "alpha/07.safetensors", "alpha/x1.safetensors", "alpha/2.safetensors.tmp", "alpha/notes.txt",
                     "stray.safetensors"):
            os.makedirs(os.path.dirname(os.path.join(r, junk)), exist_ok=True)
            shutil.copyfile(a1, os.path.join(r, junk))
        self.srv = self.start("--models", r)

    def list_models(self):
        code, resp, details = call(self.srv.stub.ListModels, it.pb.ListModelsRequest())
        self.assertEqual(code, grpc.StatusCode.OK, details)
        return resp

    def get(self, model, version=0):
        code, resp, details = call(self.srv.stub.GetModel, it.pb.GetModelRequest(model=model, version=version))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        return resp

    def assert_bounds(self, info, expected):
        self.assertEqual(len(info.y_lo), len(expected))
        self.assertEqual(len(info.y_hi), len(expected))
        for j, (lo, hi) in enumerate(expected):
            tol = 1e-4 * (hi - lo)
            self.assertAlmostEqual(info.y_lo[j], lo, delta=tol, msg="y_lo[%d]" % j)
            self.assertAlmostEqual(info.y_hi[j], hi, delta=tol, msg="y_hi[%d]" % j)

    def test_list_models(self):
        lm = self.list_models()
        self.assertEqual([m.name for m in lm.models], ["alpha", "beta", "broken"])
        alpha, beta, broken = lm.models

        self.assertEqual(alpha.version, 3, "ListModels describes the latest version")
        self.assertEqual(list(alpha.versions), [1, 3])
        self.assertEqual((alpha.method, alpha.x_dim, alpha.y_dim), ("dfo", 2, 1))
        self.assertEqual((alpha.arch, alpha.width, alpha.depth), ("mlp", 16, 3))
        d = alpha.defaults
        self.assertEqual((d.samples, d.iterations, d.seed), (128, 3, 0))
        self.assertAlmostEqual(d.sigma, 0.33, places=6)
        self.assertEqual((d.shrink, d.temperature), (0.5, 1.0))
        self.assert_bounds(alpha, [column_bounds(self.jump, 2)])
        self.assertEqual(list(alpha.load_errors), [])

        self.assertEqual(beta.version, 2)
        self.assertEqual(list(beta.versions), [2])
        self.assertEqual((beta.method, beta.x_dim, beta.y_dim), ("mse", 1, 2))
        self.assertEqual((beta.arch, beta.width, beta.depth), ("mlp", 16, 1))
        self.assert_bounds(beta, [column_bounds(self.two, 1), column_bounds(self.two, 2)])

        self.assertEqual(list(broken.versions), [])
        self.assertEqual(broken.version, 0)
        self.assertEqual(broken.method, "")
        self.assertEqual(len(broken.load_errors), 1)
        le = broken.load_errors[0]
        self.assertEqual(le.version, 1)
        self.assertTrue(le.path.endswith(os.path.join("broken", "1.safetensors")), le.path)
        self.assertIn("1.safetensors", le.message)
        self.assertGreater(le.unix_time, 1600000000)

        for m in lm.models:
            self.assertEqual(m.stats.requests, 0)
            self.assertEqual(m.stats.ok, 0)
            self.assertEqual(dict(m.stats.failures), {})
            self.assertEqual(m.stats.batches, 0)
        self.srv.stop_clean(self)

    def test_get_model(self):
        v1 = self.get("alpha", 1)
        self.assertEqual(v1.name, "alpha")
        self.assertEqual(v1.version, 1)
        self.assertEqual(list(v1.versions), [1, 3])
        self.assertEqual((v1.arch, v1.width, v1.depth), ("resnet", 32, 2))
        self.assertEqual((v1.defaults.samples, v1.defaults.iterations), (512, 2))
        self.assertEqual((v1.defaults.sigma, v1.defaults.shrink), (0.25, 0.75))
        self.assert_bounds(v1, [column_bounds(self.jump, 2)])
        latest = self.get("alpha")
        self.assertEqual(latest.version, 3)
        self.assertEqual(latest, self.get("alpha", 3))
        self.assertEqual(latest, self.list_models().models[0])

        broken = self.get("broken")
        self.assertEqual((broken.version, list(broken.versions), len(broken.load_errors)), (0, [], 1))
        self.expect(self.srv.stub.Predict, it.pb.PredictRequest(model="broken", x=[0.5, 0.5]),
                    grpc.StatusCode.NOT_FOUND, "'broken'", "no loaded version")
        for name in ("stray", "hidden", ".hidden", "bad name"):
            code, _, details = call(self.srv.stub.GetModel, it.pb.GetModelRequest(model=name))
            self.assertIn(code, (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), name)
        self.expect(self.srv.stub.GetModel, it.pb.GetModelRequest(model="alpha", version=2),
                    grpc.StatusCode.NOT_FOUND, "version 2", "loaded: 1, 3")
        self.srv.stop_clean(self)

    def test_stats_follow_calls(self):
        x = [0.25, 0.5, -0.5, 0.75, 0.0, 0.125]
        for version in (1, 0):
            code, resp, details = call(self.srv.stub.Predict, it.pb.PredictRequest(model="alpha", version=version, x=x))
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertEqual(resp.model_version, version or 3)
        code, resp, details = call(self.srv.stub.Sample, it.pb.SampleRequest(model="alpha", x=x[:2]))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        code, resp, details = call(self.srv.stub.Predict, it.pb.PredictRequest(model="beta", x=[0.5, -0.5]))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual((resp.y_dim, len(resp.y), resp.model_version), (2, 4, 2))
        st = self.get("alpha").stats
        self.assertEqual((st.requests, st.ok, dict(st.failures)), (3, 3, {}))
        self.assertEqual((st.batches, st.batched_requests, st.batched_rows), (3, 3, 7))
        self.assertAlmostEqual(st.avg_batch_requests, 1.0)
        self.assertAlmostEqual(st.avg_batch_rows, 7 / 3, places=6)
        self.assertGreater(st.avg_compute_ms, 0.0)
        self.assertGreaterEqual(st.avg_queue_ms, 0.0)
        self.assertEqual(self.get("alpha", 1).stats, st, "stats are per model, whichever version is described")
        st = self.get("beta").stats
        self.assertEqual((st.requests, st.ok, st.batches, st.batched_rows), (1, 1, 1, 2))
        self.srv.stop_clean(self)

    def test_get_model_errors_are_not_inference_failures(self):
        """GetModel for a missing version must not count in ModelStats, whose counters are
        about Predict and Sample (requests = ok + failures).

        rpc_ember.c resolve() counts NOT_FOUND / INVALID_ARGUMENT failures for GetModel calls
        too, while `requests` only counts Predict and Sample, so the counters stop adding up."""
        self.expect(self.srv.stub.GetModel, it.pb.GetModelRequest(model="alpha", version=2), grpc.StatusCode.NOT_FOUND)
        self.expect(self.srv.stub.GetModel, it.pb.GetModelRequest(model="alpha", version=-1),
                    grpc.StatusCode.INVALID_ARGUMENT)
        st = self.get("alpha").stats
        self.assertEqual(st.requests, 0)
        self.assertEqual(dict(st.failures), {}, "GetModel errors were counted as Predict/Sample failures")
        self.srv.stop_clean(self)


class SingleFile(it.EmberTest):
    def test_model_file(self):
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        path = self.train(os.path.join(self.tmp, "models", "toy.v2.safetensors"), data, width=16, seed=4)
        srv = self.start("--model", path)
        lm = srv.stub.ListModels(it.pb.ListModelsRequest(), timeout=it.RPC_TIMEOUT)
        self.assertEqual([(m.name, list(m.versions)) for m in lm.models], [("toy.v2", [1])])
        self.assertEqual(lm.models[0].width, 16)
        q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], [[0.5, 0.5], [-0.5, 0.25]])
        resp = srv.stub.Predict(it.pb.PredictRequest(model="toy.v2", x=[0.5, 0.5, -0.5, 0.25]), timeout=it.RPC_TIMEOUT)
        self.assertEqual(it.format_predict(resp, 1), self.cli("predict", "--model", path, "--input", q, "--energy"))
        srv.stop_clean(self)


class Startup(it.EmberTest):
    def run_emberd(self, *args):
        r = subprocess.run([it.EMBERD] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        return r

    def test_help(self):
        r = self.run_emberd("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--models", "--model", "--listen", "--workers", "--max-batch", "--max-delay-us", "--max-queue",
                     "--max-rows", "--max-samples", "--max-message", "--poll-ms", "--drain-ms", "--grace-ms",
                     "--split-batches", "--pool-wait-us"):
            self.assertIn(flag, r.stdout)

    def test_bad_command_lines(self):
        cases = [
            ((), "exactly one of --models DIR and --model FILE"),
            (("--models", self.tmp, "--model", "x.safetensors"), "exactly one"),
            (("--models", self.tmp, "--workers", 0), "--workers"),
            (("--models", self.tmp, "--workers", "two"), "--workers"),
            (("--models", self.tmp, "--max-message", 10), "--max-message"),
            (("--models", self.tmp, "--pool-wait-us", -1), "--pool-wait-us expects an integer in [0, 1000000]"),
            (("--models", self.tmp, "--pool-wait-us", 1000001), "--pool-wait-us"),
            (("--models", self.tmp, "--log-level", "loud"), "--log-level"),
            (("--models", self.tmp, "--frobnicate"), "--frobnicate"),
            (("--models", self.tmp, "extra"), "extra"),
        ]
        for args, needle in cases:
            r = self.run_emberd(*args)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(needle, r.stderr, args)
        r = self.run_emberd("--models", self.tmp, "--listen", "not-an-address")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot listen", r.stderr)

    def test_missing_repository(self):
        """A repository that does not exist: one line saying so and exit status 1.

        main.c adds the listening port before the first repository scan; when the scan fails
        it calls grpc_server_destroy on a server that has a listener but was never shut down,
        and gRPC aborts ("assertion failed: ShutdownCalled() || listeners_.empty()", SIGABRT)."""
        r = self.run_emberd("--models", os.path.join(self.tmp, "missing"), "--listen", "127.0.0.1:0")
        self.assertIn("cannot open the model repository", r.stderr)
        self.assertIn("missing", r.stderr)
        self.assertEqual(r.returncode, 1, "exit status %d; stderr: %s" % (r.returncode, r.stderr.strip()))

    def test_empty_repository_then_model_appears(self):
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(repo)
        srv = self.start("--models", repo, "--poll-ms", 200)
        self.assertEqual(list(srv.stub.ListModels(it.pb.ListModelsRequest(), timeout=it.RPC_TIMEOUT).models), [])
        self.assertIn("no model loaded yet", srv.log())
        self.expect(srv.stub.Predict, it.pb.PredictRequest(model="late", x=[0.5, 0.5]), grpc.StatusCode.NOT_FOUND,
                    "'late'", "serving: none")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.train(os.path.join(repo, "late", "1.safetensors"), data, width=16)
        it.wait_until("the new model", lambda: call(srv.stub.Predict, it.pb.PredictRequest(
            model="late", x=[0.5, 0.5]))[0] == grpc.StatusCode.OK)
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
