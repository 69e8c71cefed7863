"""No silent wrong answers over gRPC (docs/signatures.md): GetModel shows the model's signature
(its columns' names and dims), a request that says how many rows it holds gets
INVALID_ARGUMENT naming both sizes when x disagrees, every answer says per row how far x lies
from the training data (x_max_abs_z, the largest |z-score|, as local `ember predict` measures
it), the remote CLI heads its output with the model's names and notes far x as local mode
does, Train keeps names (inline, CSV header, --y-cols) and never guesses y, and emberd says
which layout it expects when --models holds checkpoints directly."""
import json
import os
import struct
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402

INVALID = grpc.StatusCode.INVALID_ARGUMENT
OK = grpc.StatusCode.OK
SMALL = ["--width", 16, "--steps", 30, "--batch", 16, "--negatives", 8, "--samples", 64]


def metadata(path):
    """A checkpoint's __metadata__ (the safetensors header's)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def zscore(meta, x, x_dim):
    """Per row, the largest |x - x_mean| / x_std over its columns, from the checkpoint's own
    normalisation: what x_max_abs_z must be."""
    mean, std = json.loads(meta["x_mean"]), json.loads(meta["x_std"])
    rows = [x[i:i + x_dim] for i in range(0, len(x), x_dim)]
    return [max(abs(v - m) / s for v, m, s in zip(r, mean, std)) for r in rows]


def data(path, header, n=120):
    """x = (p, q), y = p + 2 q, on a grid: two named inputs and one named output."""
    import random
    rng = random.Random(5)
    rows = []
    for _ in range(n):
        p, q = it.grid_value(rng), it.grid_value(rng)
        rows.append((p, q, p + 2 * q))
    return it.write_csv(path, header, rows)


class Signature(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        self.marked = data(os.path.join(self.tmp, "marked.csv"), ["px", "py", "y:act"])
        self.bare = data(os.path.join(self.tmp, "bare.csv"), ["px", "py", "act"])
        self.path = self.train(os.path.join(self.repo, "sig", "1.safetensors"), self.marked, seed=1)
        self.plain = self.train(os.path.join(self.repo, "plain", "1.safetensors"), self.bare, "--y-dim", 1,
                                "--y-cols", "act", seed=1)
        self.meta = metadata(self.path)

    def test_get_model_signature(self):
        srv = self.start("--models", self.repo)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="sig"), timeout=it.RPC_TIMEOUT)
        self.assertEqual((info.x_dim, info.y_dim), (2, 1))
        self.assertEqual((list(info.x_names), list(info.y_names)), (["px", "py"], ["act"]))
        listed = {m.name: m for m in srv.stub.ListModels(it.pb.ListModelsRequest(), timeout=it.RPC_TIMEOUT).models}
        self.assertEqual(list(listed["plain"].y_names), ["act"])
        # a checkpoint without names (trained before they were kept) is served as x0.., y0..
        old = os.path.join(self.repo, "old", "1.safetensors")
        os.makedirs(os.path.dirname(old))
        subprocess.check_call(["cp", os.path.join(it.SOURCE, "tests", "fixtures", "mlp.safetensors"), old])
        srv.stop_clean(self)
        srv = self.start("--models", self.repo)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="old"), timeout=it.RPC_TIMEOUT)
        self.assertEqual(list(info.x_names), ["x%d" % i for i in range(info.x_dim)])
        self.assertEqual(list(info.y_names), ["y%d" % i for i in range(info.y_dim)])
        # and the remote CLI's info shows the signature
        out = self.cli("--server", srv.target, "info", "--model", "sig")
        self.assertIn("x_names            [px, py]\n", out)
        self.assertIn("y_names            [act]\n", out)
        srv.stop_clean(self)

    def test_rows_must_match_x(self):
        srv = self.start("--models", self.repo)
        P, S = srv.stub.Predict, srv.stub.Sample
        x = [0.25, 0.5, -0.25, 0.125]  # 4 values: 2 rows of x_dim 2
        opts = it.pb.InferenceOptions(samples=64, seed=1)
        self.expect(P, it.pb.PredictRequest(model="sig", x=x, rows=1, options=opts), INVALID,
                    "x has 4 values = 2 rows of x_dim 2, request says rows 1")
        self.expect(S, it.pb.SampleRequest(model="sig", x=x, rows=4, options=opts), INVALID,
                    "x has 4 values = 2 rows of x_dim 2, request says rows 4")
        self.expect(P, it.pb.PredictRequest(model="sig", x=x[:3], rows=1, options=opts), INVALID,
                    "x has 3 values, not a whole number of rows of x_dim 2; request says rows 1 (2 values)")
        self.expect(P, it.pb.PredictRequest(model="sig", x=x, rows=0, options=opts), INVALID, "request says rows 0")
        # right: answered; unset: today's reading (a multiple of x_dim)
        code, resp, details = call(P, it.pb.PredictRequest(model="sig", x=x, rows=2, options=opts))
        self.assertEqual(code, OK, details)
        self.assertEqual(len(resp.y), 2)
        code, resp, details = call(S, it.pb.SampleRequest(model="sig", x=x, rows=2, options=opts))
        self.assertEqual((code, len(resp.rows)), (OK, 2), details)
        self.assertEqual(len(call(P, it.pb.PredictRequest(model="sig", x=x, options=opts))[1].y), 2)
        self.expect(P, it.pb.PredictRequest(model="sig", x=x[:3], options=opts), INVALID,
                    "x has 3 values: expected a multiple of the model's x_dim 2")
        stats = srv.stub.GetModel(it.pb.GetModelRequest(model="sig"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual(stats.failures["INVALID_ARGUMENT"], 5)
        srv.stop_clean(self)

    def test_x_max_abs_z(self):
        srv = self.start("--models", self.repo)
        mean, std = json.loads(self.meta["x_mean"]), json.loads(self.meta["x_std"])
        x = [mean[0], mean[1],                    # the data's centre: 0
             0.5, -0.25,                          # inside the data (a grid on [-1, 1])
             mean[0] + 40 * std[0], mean[1],      # 40 standard deviations out in px
             mean[0], mean[1] - 250 * std[1]]     # 250 out in py
        want = zscore(self.meta, x, 2)
        opts = it.pb.InferenceOptions(samples=64, seed=1)
        resp = srv.stub.Predict(it.pb.PredictRequest(model="sig", x=x, rows=4, options=opts), timeout=it.RPC_TIMEOUT)
        got = list(resp.x_max_abs_z)
        self.assertEqual(len(got), 4)
        for g, w in zip(got, want):
            self.assertAlmostEqual(g, w, delta=1e-4 * max(1.0, w))
        self.assertLess(got[0], 1e-4)
        self.assertLess(got[1], 3.0)
        self.assertAlmostEqual(got[2], 40, delta=1e-3)
        self.assertAlmostEqual(got[3], 250, delta=1e-2)
        samp = srv.stub.Sample(it.pb.SampleRequest(model="sig", x=x, rows=4, options=opts), timeout=it.RPC_TIMEOUT)
        self.assertEqual(list(samp.x_max_abs_z), got)
        srv.stop_clean(self)

    def test_remote_cli_names_and_note(self):
        srv = self.start("--models", self.repo)
        mean, std = json.loads(self.meta["x_mean"]), json.loads(self.meta["x_std"])
        q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["px", "py"],
                         [[0.25, 0.5], [mean[0] + 64 * std[0], 0.5], [-0.5, 0.25]])
        for verb, extra, head in (("predict", ["--energy"], "act,energy"),
                                  ("sample", ["--modes", 2], "row,rank,energy,weight,act")):
            args = [verb, "--input", q, "--samples", 64, "--seed", 3] + extra
            r_local = subprocess.run([it.EMBER] + [str(a) for a in args + ["--model", self.path]],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                     timeout=it.CLI_TIMEOUT)
            r_remote = subprocess.run([it.EMBER, "--server", srv.target] + [str(a) for a in args + ["--model", "sig"]],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                      timeout=it.CLI_TIMEOUT)
            self.assertEqual((r_local.returncode, r_remote.returncode), (0, 0), r_remote.stderr)
            self.assertEqual(r_remote.stdout.splitlines()[0], head)
            self.assertEqual(r_remote.stdout, r_local.stdout)
            # the same note, from the same measure at the same threshold
            self.assertIn("note: row 1 of x is 64 standard deviations from the training data's mean", r_remote.stderr)
            self.assertEqual(r_remote.stderr, r_local.stderr)
        srv.stop_clean(self)

    def test_train_keeps_names_and_never_guesses(self):
        data_dir = os.path.join(self.tmp, "data")
        os.makedirs(data_dir)
        data(os.path.join(data_dir, "bare.csv"), ["px", "py", "act"])
        # jobs at emberd's own priority: at the default --train-nice 19 (SCHED_IDLE) a loaded
        # machine can starve them for minutes (test_train.py says more)
        srv = self.start("--models", self.repo, "--data-dir", data_dir, "--poll-ms", 200, "--train-nice", 0)
        x, y = [0.1, 0.2, 0.3, 0.1, -0.2, 0.5, 0.4, 0.4], [0.5, 0.5, 0.8, 1.2]
        base = dict(width=16, steps=20, batch=4, negatives=4, samples=64, seed=1)

        def run(model, **kw):
            w = it.Watcher(srv.stub.Train(it.pb.TrainRequest(model=model, **dict(base, **kw)), timeout=120 * it.SCALE))
            return w.wait_end(120 * it.SCALE)

        def names(model):
            info = it.wait_until("%s served" % model,
                                 lambda: it.call(srv.stub.GetModel, it.pb.GetModelRequest(model=model))[1])
            return list(info.x_names), list(info.y_names)

        self.assertEqual(run("inline", x=x, y=y, x_dim=2, y_dim=1, x_names=["p", "q"], y_names=["r"]), (OK, ""))
        self.assertEqual(names("inline"), (["p", "q"], ["r"]))
        code, details = run("bad", x=x, y=y, x_dim=2, y_dim=1, x_names=["p"])
        self.assertEqual(code, INVALID)
        self.assertIn("x_names has 1 names, expected 2 (x_dim)", details)
        code, details = run("bad", x=x, y=y, x_dim=2, y_dim=1, x_names=["p", "1.5"])
        self.assertEqual(code, INVALID)
        self.assertIn("x_names[1]: \"1.5\" is a number", details)
        code, details = run("bad", dataset="bare.csv")
        self.assertEqual(code, INVALID)
        self.assertIn("which columns are y? The header \"px,py,act\" marks none", details)
        code, details = run("bad", dataset="bare.csv", x_names=["a", "b"], y_dim=1)
        self.assertEqual(code, INVALID)
        self.assertIn("x_names and y_names are for inline data", details)
        self.assertEqual(run("cols", dataset="bare.csv", y_cols="px"), (OK, ""))
        self.assertEqual(names("cols"), (["py", "act"], ["px"]))
        # the CLI sends the file's names with inline data, and --y-cols with a dataset
        self.cli("--server", srv.target, "train", "--model", "cli", "--data", self.marked, "--quiet", *SMALL)
        self.assertEqual(names("cli"), (["px", "py"], ["act"]))
        self.cli("--server", srv.target, "train", "--model", "cli2", "--dataset", "bare.csv", "--y-cols", "py,px",
                 "--quiet", *SMALL)
        self.assertEqual(names("cli2"), (["act"], ["py", "px"]))
        self.assertEqual(os.listdir(os.path.join(self.repo)).count("bad"), 0)
        srv.stop_clean(self)

    def test_models_dir_one_level_too_deep(self):
        flat = os.path.join(self.tmp, "flat")
        os.makedirs(flat)
        subprocess.check_call(["cp", self.path, os.path.join(flat, "policy.safetensors")])
        srv = self.start("--models", flat)
        log = srv.log()
        self.assertIn('msg="checkpoint files directly in the model repository are not served"', log)
        self.assertIn("layout=DIR/<model>/<version>.safetensors", log)
        self.assertIn("files=1 first=policy.safetensors", log)
        self.assertIn(flat + "/policy/1.safetensors", log)
        self.expect(srv.stub.GetModel, it.pb.GetModelRequest(model="policy"), grpc.StatusCode.NOT_FOUND)
        srv.stop_clean(self)
        # the right layout: no such line
        srv = self.start("--models", self.repo)
        self.assertNotIn("directly in the model repository", srv.log())
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
