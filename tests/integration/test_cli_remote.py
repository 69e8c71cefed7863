"""The ember CLI's remote mode (`ember --server HOST:PORT VERB`) against a real emberd: the
same output as the local verbs on the same checkpoint, and one-line errors."""
import os
import random
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402


class CliRemote(it.EmberTest):
    def setUp(self):
        super().setUp()
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        two = it.two_out_data(os.path.join(self.tmp, "two.csv"))
        self.jump = self.train(os.path.join(repo, "jump", "2.safetensors"), data, seed=3)
        self.jump1 = self.train(os.path.join(repo, "jump", "1.safetensors"), data, seed=4, width=16)
        self.two = self.train(os.path.join(repo, "two", "1.safetensors"), two, "--y-dim", 2, seed=5)
        rng = random.Random(3)
        self.q2 = it.write_csv(os.path.join(self.tmp, "q2.csv"), ["a", "b"],
                               [[it.grid_value(rng), it.grid_value(rng)] for _ in range(11)])
        self.q1 = it.write_csv(os.path.join(self.tmp, "q1.csv"), ["a"], [[it.grid_value(rng)] for _ in range(5)])
        self.srv = self.start("--models", repo)

    def remote(self, *args, **kw):
        return self.cli("--server", self.srv.target, *args, **kw)

    def remote_fails(self, *args):
        r = subprocess.run([it.EMBER, "--server", self.srv.target] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=it.CLI_TIMEOUT)
        self.assertNotEqual(r.returncode, 0, args)
        self.assertEqual(r.stdout, "", "a failed command must print nothing on stdout")
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        return r.stderr

    def test_predict_equals_local(self):
        for name, path, q in (("jump", self.jump, self.q2), ("two", self.two, self.q1)):
            for extra in ((), ("--seed", 17, "--samples", 96, "--iters", 2, "--sigma", 0.25, "--shrink", 0.75)):
                local = self.cli("predict", "--model", path, "--input", q, "--energy", *extra)
                self.assertEqual(self.remote("predict", "--model", name, "--input", q, "--energy", *extra), local)
                # split into requests of 2 rows (row_offset keeps every row's random stream)
                self.assertEqual(self.remote("predict", "--model", name, "--input", q, "--energy", "--chunk-rows", 2,
                                             *extra), local)
        # a pinned version; stdin input
        local = self.cli("predict", "--model", self.jump1, "--input", self.q2, "--seed", 2)
        with open(self.q2) as f:
            text = f.read()
        self.assertEqual(self.remote("predict", "--model", "jump", "--version", 1, "--input", "-", "--seed", 2,
                                     input_text=text), local)
        self.srv.stop_clean(self)

    def test_sample_equals_local(self):
        args = ("--seed", 4, "--modes", 3, "--radius", 0.125, "--min-mass", 0.0625, "--polish", 2)
        for name, path, q in (("jump", self.jump, self.q2), ("two", self.two, self.q1)):
            local = self.cli("sample", "--model", path, "--input", q, *args)
            self.assertEqual(self.remote("sample", "--model", name, "--input", q, *args), local)
            self.assertEqual(self.remote("sample", "--model", name, "--input", q, "--chunk-rows", 3, *args), local)
        self.srv.stop_clean(self)

    def test_info_and_models(self):
        self.remote("predict", "--model", "jump", "--input", self.q2)
        info = self.remote("info", "--model", "jump")
        fields = {l.split(None, 1)[0]: l.split(None, 1)[1].strip() for l in info.splitlines() if l.strip()}
        self.assertEqual(fields["name"], "jump")
        self.assertEqual(fields["version"], "2 (loaded: 1,2)")
        self.assertEqual(fields["method"], "dfo")
        self.assertTrue(fields["network"].startswith("resnet 32x2"), fields["network"])
        self.assertEqual(fields["requests"], "1 (ok 1)")
        models = self.remote("models")
        lines = models.splitlines()
        self.assertEqual(len(lines), 3, models)
        self.assertTrue(lines[1].startswith("jump "), models)
        self.assertTrue(lines[2].startswith("two "), models)
        self.srv.stop_clean(self)

    def test_bench_serve_open_loop(self):
        """`ember bench serve --rate`: every scheduled arrival of the window is sent and answered
        (a fixed rate gives exactly rate x duration arrivals), the server counts every arrival
        of warm-up and window, and each line says how late the sends were and, with --local, the
        library's own p50 back to back and its p50 and p99 in an open loop at the same rate."""
        out = self.remote("bench", "serve", "--model", "jump", "--rate", "200,50", "--duration", "1",
                          "--warmup", "0.5", "--samples", 16, "--iters", 1, "--threads", 1, "--local", self.jump)
        lines = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in out.splitlines() if l.startswith("serve ")]
        self.assertEqual([l["rate"] for l in lines], ["200", "50"], out)
        for l in lines:
            rate = int(l["rate"])
            self.assertEqual(l["mode"], "open")
            self.assertIn(int(l["requests"]), (rate - 1, rate, rate + 1), out)
            self.assertEqual((l["errors"], l["expired_unsent"]), ("0", "0"), out)
            lag, lag_max = float(l["send_lag_mean_ms"]), float(l["send_lag_max_ms"])
            self.assertGreaterEqual(lag, 0.0)
            self.assertGreaterEqual(lag_max, lag)
            lib, open50, open99 = (float(l[k]) for k in ("library_p50_ms", "library_open_p50_ms", "library_open_p99_ms"))
            self.assertGreater(lib, 0.0, out)
            self.assertGreater(open50, 0.0, out)
            self.assertGreaterEqual(open99, open50, out)
        info = self.remote("info", "--model", "jump")
        served = int(next(l for l in info.splitlines() if l.startswith("requests")).split()[1])
        self.assertLessEqual(abs(served - (300 + 75)), 4, info)  # 1.5 s at 200/s and at 50/s
        # one stream for arrivals 0.5 ms apart: an arrival that finds it busy waits (or expires after 1 s), and
        # every one of the window is still accounted for, answered, failed or expired unsent
        out = self.remote("bench", "serve", "--model", "jump", "--rate", "2000", "--streams", 1, "--duration",
                          "0.5", "--warmup", "0", "--deadline-ms", 1000, "--samples", 16, "--iters", 1, "--threads", 1)
        l = dict(kv.split("=", 1) for kv in out.split("\n")[0].split()[1:])
        self.assertEqual((l["mode"], l["max_in_flight"]), ("open", "1"), out)
        self.assertIn(int(l["requests"]), (999, 1000, 1001), out)
        self.assertGreaterEqual(int(l["errors"]), int(l["expired_unsent"]), out)
        self.srv.stop_clean(self)

    def test_errors(self):
        self.assertIn("NOT_FOUND", self.remote_fails("predict", "--model", "nope", "--input", self.q2))
        self.assertIn("NOT_FOUND", self.remote_fails("predict", "--model", "jump", "--version", 9, "--input", self.q2))
        err = self.remote_fails("predict", "--model", "jump", "--input", self.q1)  # x has 1 column, model 2
        self.assertTrue("column" in err or "INVALID_ARGUMENT" in err, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.srv.stop_clean(self)
        err = self.remote_fails("models")  # the server is gone
        self.assertIn("UNAVAILABLE", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)


if __name__ == "__main__":
    sys.exit(it.main())
