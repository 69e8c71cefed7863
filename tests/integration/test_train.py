"""Train over gRPC: inline data and --data-dir datasets, progress streaming, publication as the
next version (byte-identical to a local `ember train` with the same seed and threads), cancel
and disconnect, refusals (path escapes, NaN, dims, rows, methods, too many jobs), the admin
token, shutdown during a job, and `ember --server HOST:PORT train` with Ctrl-C."""
import csv
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
OK = grpc.StatusCode.OK

# the settings both sides use: small and quick under ASan
SETTINGS = dict(width=16, steps=150, batch=32, negatives=16, seed=3, samples=256)
LONG = dict(width=16, steps=10000000, batch=32, negatives=16, seed=1)  # runs until cancelled


def read_xy(path, y_dim=1):
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    x, y = [], []
    for r in rows:
        v = [float(t) for t in r]
        x += v[:-y_dim]
        y += v[-y_dim:]
    return x, y, len(rows[0]) - y_dim


def files(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


class Train(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        self.data_dir = os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir)
        self.csv = it.jump_data(os.path.join(self.data_dir, "jump.csv"), n=200)
        self.x, self.y, self.x_dim = read_xy(self.csv)
        # another model, so that the repository is not empty
        self.train(os.path.join(self.repo, "other", "1.safetensors"), self.csv, width=16, steps=20)

    def start(self, *args, **kw):
        """emberd whose jobs run at its own priority (--train-nice 0) unless args say otherwise:
        at the default 19 (SCHED_IDLE) a job only gets CPU nothing else wants, and on a shared,
        loaded machine (a slow TSan build all the more) it may not get through its steps in
        minutes. test_cancel_and_disconnect_publish_nothing checks the default's priority."""
        if "--train-nice" not in args:
            args += ("--train-nice", 0)
        return super().start(*args, **kw)

    def request(self, **kw):
        args = dict(SETTINGS)
        args.update(kw)
        if "dataset" not in args and "x" not in args:
            # the CSV header's names, which a model trained from the file keeps
            args.update(x=self.x, y=self.y, x_dim=self.x_dim, y_dim=1, x_names=["a", "b"], y_names=["y0"])
        return it.pb.TrainRequest(**args)

    def run_train(self, stub, req, metadata=None, timeout=120 * it.SCALE):
        """Every message of a Train call and its final status."""
        w = it.Watcher(stub.Train(req, timeout=timeout, metadata=metadata))
        code, details = w.wait_end(timeout)
        msgs = []
        while not w.messages.empty():
            msgs.append(w.messages.get())
        return msgs, code, details

    def local(self, out, **kw):
        s = dict(SETTINGS)
        s.update(kw)
        return self.train(out, self.csv, width=s["width"], steps=s["steps"], batch=s["batch"],
                          negatives=s["negatives"], seed=s["seed"], samples=s["samples"])

    def wait_served(self, srv, model, version):
        req = it.pb.PredictRequest(model=model, version=version, x=[0.5, 0.25],
                                   options=it.pb.InferenceOptions(samples=64, seed=1))
        return it.wait_until("version %d of %s served" % (version, model),
                             lambda: it.call(srv.stub.Predict, req)[1])

    def assert_progress(self, msgs, steps, version):
        self.assertGreaterEqual(len(msgs), 2, msgs)
        last = msgs[-1]
        self.assertTrue(last.done)
        self.assertEqual(last.version, version)
        self.assertEqual(last.step, steps)
        prev = 0
        for m in msgs[:-1]:
            self.assertFalse(m.done)
            self.assertGreater(m.step, prev)
            self.assertEqual(m.steps, steps)
            self.assertEqual(m.rows, 200)
            prev = m.step
        self.assertGreaterEqual(last.step, prev)

    def assert_no_temp(self, d):
        for f in files(d):
            self.assertFalse(f.startswith(".") or ".tmp" in f, "left behind in %s: %s" % (d, files(d)))

    # ---- publication ----------------------------------------------------------------------------

    def test_inline_and_dataset_publish_versions_identical_to_local(self):
        local = self.local(os.path.join(self.tmp, "local.safetensors"))
        srv = self.start("--models", self.repo, "--data-dir", self.data_dir, "--poll-ms", 200)
        msgs, code, details = self.run_train(srv.stub, self.request(model="jump"))
        self.assertEqual(code, OK, details)
        self.assert_progress(msgs, 150, 1)
        published = os.path.join(self.repo, "jump", "1.safetensors")
        self.assertEqual(subprocess.call(["cmp", local, published]), 0, "remote and local checkpoints differ")
        resp = self.wait_served(srv, "jump", 1)
        self.assertEqual(resp.model_version, 1)
        # the same from the data directory: the next version, the same bytes
        msgs, code, details = self.run_train(srv.stub, self.request(model="jump", dataset="jump.csv"))
        self.assertEqual(code, OK, details)
        self.assert_progress(msgs, 150, 2)
        self.assertEqual(subprocess.call(["cmp", local, os.path.join(self.repo, "jump", "2.safetensors")]), 0)
        self.assertEqual(self.wait_served(srv, "jump", 2).model_version, 2)
        self.assert_no_temp(os.path.join(self.repo, "jump"))
        self.assertIn("model trained and published", srv.log())
        srv.stop_clean(self)

    def test_validation_split(self):
        """val_split holds rows out as local --val-split does (the same bytes), and the progress
        carries the validation loss once it is measured."""
        s = SETTINGS
        local = self.train(os.path.join(self.tmp, "local-val.safetensors"), self.csv, "--val-split", 0.25,
                           width=s["width"], steps=s["steps"], batch=s["batch"], negatives=s["negatives"],
                           seed=s["seed"], samples=s["samples"])
        srv = self.start("--models", self.repo)
        msgs, code, details = self.run_train(srv.stub, self.request(model="v", val_split=0.25))
        self.assertEqual(code, OK, details)
        self.assert_progress(msgs, 150, 1)
        self.assertEqual(subprocess.call(["cmp", local, os.path.join(self.repo, "v", "1.safetensors")]), 0,
                         "remote and local checkpoints with --val-split differ")
        for m in msgs:
            measured = m.HasField("val_loss")
            self.assertEqual(measured, m.step >= 7, "validation every 150 / 20 = 7 steps, step %d" % m.step)
            if measured:
                self.assertAlmostEqual(m.val_chance, 2.8332133, places=5)  # log(17 candidates)
                self.assertGreater(m.val_loss, 0)
                self.assertEqual(m.val_rows, 50)
        info = self.cli("info", "--model", local)
        self.assertRegex(info, r"(?m)^validation +loss %.4f on 50 held-out rows" % msgs[-1].val_loss)
        w = it.Watcher(srv.stub.Train(self.request(model="v", val_split=1.5), timeout=60))
        code, details = w.wait_end(60)
        self.assertEqual(code, INVALID_ARGUMENT)
        self.assertIn("the validation share (val split) must be in [0, 1) (0 = none), got 1.5", details)
        srv.stop_clean(self)

    def test_settings_and_progress_rate(self):
        srv = self.start("--models", self.repo)
        # a longer job: several progress messages, in order, about two a second. Fewer steps in
        # a slow build: 4000 take 5 s of CPU in the ASan build and 48 s in the TSan build, which
        # on a loaded machine did not end within 600 s
        steps = int(4000 / it.SCALE)
        msgs, code, details = self.run_train(srv.stub, self.request(model="m", steps=steps, method="mse"))
        self.assertEqual(code, OK, details)
        self.assert_progress(msgs, steps, 1)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="other"))
        self.assertEqual(info.version, 1)
        m = it.wait_until("m served", lambda: it.call(srv.stub.GetModel, it.pb.GetModelRequest(model="m"))[1])
        self.assertEqual((m.method, m.width, m.x_dim, m.y_dim), ("mse", 16, 2, 1))
        srv.stop_clean(self)

    # ---- cancel, disconnect, shutdown ---------------------------------------------------------------

    def test_cancel_and_disconnect_publish_nothing(self):
        srv = self.start("--models", self.repo, "--train-nice", 19)
        w = it.Watcher(srv.stub.Train(self.request(model="c", **LONG), timeout=120))
        first, second = w.next(), w.next()
        self.assertLess(first.step, second.step)
        # the job's thread runs at --train-nice 19, the default, under SCHED_IDLE (policy 5), the
        # workers at SCHED_OTHER (0) and emberd's own nice (the suite's: `nice -n 19 make test`
        # makes it 19): field 41 of /proc/PID/task/TID/stat, fields 19 (nice)
        base = os.getpriority(os.PRIO_PROCESS, 0)
        policies = []
        for tid in os.listdir("/proc/%d/task" % srv.proc.pid):
            try:
                with open("/proc/%d/task/%s/stat" % (srv.proc.pid, tid)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            policies.append((int(fields[38]), int(fields[16])))  # policy, nice (fields 41, 19)
        self.assertIn((5, 19), policies)
        self.assertIn((0, base), policies)
        w.cancel()
        it.wait_until("the job cancelled", lambda: "training failed" in srv.log() and "CANCELLED" in srv.log())
        # the slot is free again: the next job runs; a disconnecting client stops it too
        ch = srv.new_channel()
        w2 = it.Watcher(it.pbg.EmberStub(ch).Train(self.request(model="c", **LONG), timeout=120))
        w2.next()
        ch.close()
        it.wait_until("the second job cancelled", lambda: srv.log().count("training failed") >= 2)
        self.assertEqual(files(os.path.join(self.repo, "c")), [])
        self.assertEqual(it.call(srv.stub.GetModel, it.pb.GetModelRequest(model="c"))[0], NOT_FOUND)
        srv.stop_clean(self)

    def test_shutdown_during_a_job(self):
        srv = self.start("--models", self.repo)
        w = it.Watcher(srv.stub.Train(self.request(model="s", **LONG), timeout=120))
        w.next()
        srv.signal(signal.SIGTERM)
        code, details = w.wait_end()
        self.assertEqual(code, UNAVAILABLE, details)
        self.assertIn("shutting down", details)
        srv.assert_clean(self, srv.wait())
        self.assertEqual(files(os.path.join(self.repo, "s")), [])

    # ---- refusals -----------------------------------------------------------------------------------

    def expect_train(self, srv, req, code, *needles, metadata=None):
        msgs, got, details = self.run_train(srv.stub, req, metadata=metadata)
        self.assertEqual(got, code, "expected %s, got %s (%r)" % (code, got, details))
        for n in needles:
            self.assertIn(n, details)
        return msgs

    def test_refusals(self):
        outside = it.jump_data(os.path.join(self.tmp, "outside.csv"), n=20)
        os.symlink(outside, os.path.join(self.data_dir, "escape.csv"))
        os.symlink(self.csv, os.path.join(self.data_dir, "inside.csv"))
        srv = self.start("--models", self.repo, "--data-dir", self.data_dir, "--max-train-rows", 300)
        E = lambda **kw: self.request(model="r", **kw)  # noqa: E731
        self.expect_train(srv, E(dataset="../outside.csv"), INVALID_ARGUMENT, "'..'")
        self.expect_train(srv, E(dataset="sub/../../outside.csv"), INVALID_ARGUMENT, "'..'")
        self.expect_train(srv, E(dataset=outside), INVALID_ARGUMENT, "absolute")
        self.expect_train(srv, E(dataset="escape.csv"), PERMISSION_DENIED, "outside")
        self.expect_train(srv, E(dataset="missing.csv"), NOT_FOUND, "missing.csv")
        nan_y = list(self.y)
        nan_y[7] = float("nan")
        self.expect_train(srv, E(x=self.x, y=nan_y, x_dim=2, y_dim=1), INVALID_ARGUMENT, "y[7]", "NaN")
        self.expect_train(srv, E(x=self.x, y=self.y[:-1], x_dim=2, y_dim=1), INVALID_ARGUMENT, "y has 199 values")
        self.expect_train(srv, E(x=self.x[:-1], y=self.y, x_dim=2, y_dim=1), INVALID_ARGUMENT, "x_dim 2")
        self.expect_train(srv, E(x=self.x, y=self.y, x_dim=0, y_dim=1), INVALID_ARGUMENT, "x_dim")
        self.expect_train(srv, E(x=self.x * 2, y=self.y * 2, x_dim=2, y_dim=1), INVALID_ARGUMENT,
                          "400 rows", "--max-train-rows")
        self.expect_train(srv, E(method="magic"), INVALID_ARGUMENT, "method", "magic")
        self.expect_train(srv, E(chain_steps=5), INVALID_ARGUMENT, "langevin only")
        self.expect_train(srv, self.request(model="../x"), INVALID_ARGUMENT, "model name")
        self.expect_train(srv, it.pb.TrainRequest(model="r"), INVALID_ARGUMENT, "no training data")
        # a symbolic link that stays inside is fine (and a dataset can be refused by the reader)
        with open(os.path.join(self.data_dir, "bad.csv"), "w") as f:
            f.write("a,b,y:y\n1,2,3\n1,nan,3\n")
        self.expect_train(srv, E(dataset="bad.csv"), INVALID_ARGUMENT, "bad.csv:3", "NaN")
        msgs, code, details = self.run_train(srv.stub, E(dataset="inside.csv", steps=20))
        self.assertEqual(code, OK, details)
        # one job at a time by default
        w = it.Watcher(srv.stub.Train(self.request(model="long", **LONG), timeout=120))
        w.next()
        self.expect_train(srv, self.request(model="r2"), RESOURCE_EXHAUSTED, "--max-train-jobs")
        w.cancel()
        self.assertEqual(files(os.path.join(self.repo, "long")), [])
        self.assertEqual(files(os.path.join(self.repo, "r")), ["1.safetensors"])
        srv.stop_clean(self)
        # no --data-dir, or a single-file server
        srv = self.start("--models", self.repo)
        self.expect_train(srv, E(dataset="jump.csv"), grpc.StatusCode.FAILED_PRECONDITION, "--data-dir")
        srv.stop_clean(self)

    def test_size_limits(self):
        """Model and workspace sizes are bounded before anything is allocated: the library's
        EMBER_MAX_PARAMS, and emberd's --max-train-mib per job (default 1024) with the data's
        own size once a dataset file has been read."""
        srv = self.start("--models", self.repo, "--data-dir", self.data_dir)
        # 8192 x 2: 134 million parameters, about 2 GiB with gradients and Adam's moments
        self.expect_train(srv, self.request(model="big", width=8192, depth=2), INVALID_ARGUMENT,
                          "134275073 parameters", "resnet 8192x2", "this server allows 1024 MiB per job",
                          "--max-train-mib")
        # 16384 x 256 is beyond any server's flag: the library's own limit
        self.expect_train(srv, self.request(model="big", width=16384, depth=256), INVALID_ARGUMENT,
                          "68723736577 parameters", "EMBER_MAX_PARAMS")
        self.assertEqual(files(os.path.join(self.repo, "big")), [])
        srv.stop_clean(self)
        # a smaller budget: checked against inline data at once, and against a dataset's own
        # columns once the job has read it
        wide = os.path.join(self.data_dir, "wide.csv")
        it.write_csv(wide, ["x%d" % i for i in range(6000)] + ["y:y"],
                     [[0.001 * ((i * 7 + r) % 13) for i in range(6001)] for r in range(20)])
        srv = self.start("--models", self.repo, "--data-dir", self.data_dir, "--max-train-mib", 16)
        self.expect_train(srv, self.request(model="w", width=1024), INVALID_ARGUMENT,
                          "resnet 1024x2 for x_dim 2, y_dim 1", "this server allows 16 MiB per job")
        # 256 wide: about 5 MiB for one x column, 28 MiB for this file's 6000
        self.expect_train(srv, self.request(model="w", dataset="wide.csv", width=256, steps=5), INVALID_ARGUMENT,
                          "resnet 256x2 for x_dim 6000, y_dim 1", "16 MiB per job (--max-train-mib)")
        msgs, code, details = self.run_train(srv.stub, self.request(model="w", steps=5))
        self.assertEqual(code, OK, details)
        self.assertEqual(files(os.path.join(self.repo, "w")), ["1.safetensors"])
        srv.stop_clean(self)

    def test_cancelled_job_frees_its_slot(self):
        """A cancelled job gives its --max-train-jobs slot back at once, not when its thread
        (at SCHED_IDLE, possibly minutes from its next step on a busy CPU) gets round to
        stopping: the next Train is accepted while the first is still in its step. Stopping
        jobs still hold their memory, so slots and stopping jobs together stay below twice
        --max-train-jobs."""
        srv = self.start("--models", self.repo)
        slow = dict(width=256, batch=128, negatives=512, steps=1000, seed=1)  # seconds a step here
        watchers = []
        for n in (1, 2):
            watchers.append(it.Watcher(srv.stub.Train(self.request(model="slow", **slow), timeout=120)))
            it.wait_until("job %d started" % n, lambda: srv.log().count("training started") == n)
            watchers[-1].cancel()
            it.wait_until("cancel %d seen" % n, lambda: srv.log().count("cancelling") == n)
        # both are still in their first step: a third job would make three jobs' memory
        self.expect_train(srv, self.request(model="next", steps=5), RESOURCE_EXHAUSTED,
                          "2 cancelled training jobs are still stopping")
        it.wait_until("the slow jobs stopped", lambda: srv.log().count("training failed") == 2,
                      timeout=120 * it.SCALE)
        msgs, code, details = self.run_train(srv.stub, self.request(model="next", steps=5))
        self.assertEqual(code, OK, details)
        self.assertEqual(files(os.path.join(self.repo, "slow")), [])
        self.assertEqual(files(os.path.join(self.repo, "next")), ["1.safetensors"])
        srv.stop_clean(self)

    def test_admin_token(self):
        def token_file(name, tok):
            p = os.path.join(self.tmp, name)
            with open(p, "w") as f:
                f.write(tok + "\n")
            return p
        user = token_file("tokens", "user-token-0123456789")
        admin = token_file("admin", "admin-token-9876543210")
        srv = self.start("--models", self.repo, "--token-file", user, "--admin-token-file", admin)
        req = self.request(model="a", steps=20)
        self.expect_train(srv, req, UNAUTHENTICATED, "admin token")
        self.expect_train(srv, req, PERMISSION_DENIED, "admin token",
                          metadata=[("authorization", "Bearer user-token-0123456789")])
        msgs, code, details = self.run_train(srv.stub, req, metadata=[("authorization", "Bearer admin-token-9876543210")])
        self.assertEqual(code, OK, details)
        self.assertEqual(msgs[-1].version, 1)
        # the CLI with the admin token
        r = subprocess.run([it.EMBER, "--server", srv.target, "train", "--model", "a", "--data", self.csv,
                            "--steps", "20", "--width", "16", "--batch", "32", "--negatives", "16", "--token-file", user],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("PERMISSION_DENIED", r.stderr)
        out = self.cli("--server", srv.target, "--token-file", admin, "train", "--model", "a", "--data", self.csv,
                       "--steps", 20, "--width", 16, "--batch", 32, "--negatives", 16)
        self.assertEqual(out, "")
        self.assertEqual(files(os.path.join(self.repo, "a")), ["1.safetensors", "2.safetensors"])
        srv.stop_clean(self)

    # ---- the CLI ------------------------------------------------------------------------------------

    def test_cli_remote_train(self):
        local = self.local(os.path.join(self.tmp, "local.safetensors"))
        srv = self.start("--models", self.repo, "--data-dir", self.data_dir)
        flags = ["--width", 16, "--steps", 150, "--batch", 32, "--negatives", 16, "--seed", 3, "--samples", 256]
        r = subprocess.run([it.EMBER, "--server", srv.target, "train", "--model", "cli", "--data", self.csv] +
                           [str(f) for f in flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=it.CLI_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("training dfo on 200 rows (x_dim 2, y_dim 1)", r.stderr)
        self.assertIn("step 150/150", r.stderr)
        self.assertIn("published cli version 1", r.stderr)
        self.assertEqual(subprocess.call(["cmp", local, os.path.join(self.repo, "cli", "1.safetensors")]), 0)
        self.cli("--server", srv.target, "train", "--model", "cli", "--dataset", "jump.csv", "--quiet",
                 *flags)
        self.assertEqual(subprocess.call(["cmp", local, os.path.join(self.repo, "cli", "2.safetensors")]), 0)
        # then query it, as docs/emberd.md says
        self.wait_served(srv, "cli", 2)
        q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], [[0.5, 0.25], [-0.5, 0.25]])
        out = self.cli("--server", srv.target, "predict", "--model", "cli", "--input", q, "--samples", 64)
        self.assertEqual(len(out.splitlines()), 3)
        # Ctrl-C cancels the job: exit 130, nothing published
        p = subprocess.Popen([it.EMBER, "--server", srv.target, "train", "--model", "cli", "--data", self.csv,
                              "--steps", "10000000", "--width", "16", "--batch", "32", "--negatives", "16"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        it.wait_until("remote training running", lambda: "training started" in srv.log() and
                      srv.log().count("training started") >= 3, timeout=60 * it.SCALE)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60 * it.SCALE)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("cancelled", err)
        it.wait_until("the job cancelled", lambda: "training failed" in srv.log())
        self.assertEqual(files(os.path.join(self.repo, "cli")), ["1.safetensors", "2.safetensors"])
        # errors from the server are reported, exit 1
        r = subprocess.run([it.EMBER, "--server", srv.target, "train", "--model", "cli", "--dataset", "../x.csv"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
