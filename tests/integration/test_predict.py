"""Remote answers equal local ones: emberd's Predict and Sample against `ember predict` and
`ember sample` on the same checkpoint, seed and options, compared byte for byte after the
CLI's formatting; split requests (row_offset) equal one request."""
import os
import random
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call, format_predict, format_sample  # noqa: E402

import grpc  # noqa: E402


class PredictMatchesCli(it.EmberTest):
    def setUp(self):
        super().setUp()
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        two = it.two_out_data(os.path.join(self.tmp, "two.csv"))
        self.jump = self.train(os.path.join(repo, "jump", "1.safetensors"), data, seed=3)
        self.two = self.train(os.path.join(repo, "two", "1.safetensors"), two, "--y-dim", 2, seed=4)
        self.mse = self.train(os.path.join(repo, "flat", "1.safetensors"), data, "--method", "mse", seed=5)
        rng = random.Random(11)
        self.x2 = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(9)]
        self.x1 = [[it.grid_value(rng)] for _ in range(7)]
        self.q2 = it.write_csv(os.path.join(self.tmp, "q2.csv"), ["a", "b"], self.x2)
        self.q1 = it.write_csv(os.path.join(self.tmp, "q1.csv"), ["a"], self.x1)
        self.srv = self.start("--models", repo, "--workers", 2)

    def predict(self, model, rows, **kw):
        opts = kw.pop("options", None)
        req = it.pb.PredictRequest(model=model, x=[v for r in rows for v in r], **kw)
        if opts is not None:
            req.options.CopyFrom(opts)
        code, resp, details = call(self.srv.stub.Predict, req)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        return resp

    def test_predict_defaults_equal_cli(self):
        for model, path, q, rows, ydim in (("jump", self.jump, self.q2, self.x2, 1),
                                           ("two", self.two, self.q1, self.x1, 2)):
            for seed in (0, 7, 123456789012):
                local = self.cli("predict", "--model", path, "--input", q, "--seed", seed, "--energy")
                resp = self.predict(model, rows, options=it.pb.InferenceOptions(seed=seed))
                self.assertEqual(resp.model_version, 1)
                self.assertEqual(resp.y_dim, ydim)
                self.assertEqual(len(resp.y), len(rows) * ydim)
                self.assertEqual(len(resp.energy), len(rows))
                self.assertEqual(format_predict(resp, ydim), local, "model %s seed %d" % (model, seed))
        self.srv.stop_clean(self)

    def test_predict_options_equal_cli(self):
        # binary fractions, so strtof in the CLI and float32 in protobuf agree exactly
        local = self.cli("predict", "--model", self.jump, "--input", self.q2, "--seed", 5, "--samples", 96,
                         "--iters", 4, "--sigma", 0.25, "--shrink", 0.75, "--temperature", 0.5, "--energy")
        opts = it.pb.InferenceOptions(seed=5, samples=96, iterations=4, sigma=0.25, shrink=0.75, temperature=0.5)
        resp = self.predict("jump", self.x2, options=opts, version=1)
        self.assertEqual(format_predict(resp, 1), local)
        # and the options matter: the default-option answer differs
        plain = self.predict("jump", self.x2, options=it.pb.InferenceOptions(seed=5))
        self.assertNotEqual(list(plain.y), list(resp.y))
        self.srv.stop_clean(self)

    def test_explicit_model_equals_cli(self):
        local = self.cli("predict", "--model", self.mse, "--input", self.q2)
        resp = self.predict("flat", self.x2)
        self.assertEqual(format_predict(resp, 1, energy=False), local)
        self.assertEqual(list(resp.energy), [0.0] * len(self.x2), "explicit models answer energy 0")
        self.srv.stop_clean(self)

    def test_row_offset_split_equals_one_request(self):
        opts = it.pb.InferenceOptions(seed=42)
        whole = self.predict("jump", self.x2, options=opts)
        # three pieces, each with the random-stream index of its first row
        parts_y, parts_e = [], []
        for lo, hi in ((0, 2), (2, 3), (3, 9)):
            r = self.predict("jump", self.x2[lo:hi], options=opts, row_offset=lo)
            parts_y += list(r.y)
            parts_e += list(r.energy)
        self.assertEqual(parts_y, list(whole.y))
        self.assertEqual(parts_e, list(whole.energy))
        # every row alone, at its offset
        for i, row in enumerate(self.x2):
            r = self.predict("jump", [row], options=opts, row_offset=i)
            self.assertEqual((r.y[0], r.energy[0]), (whole.y[i], whole.energy[i]), "row %d" % i)
        # without the offset a lone row uses stream 0, which (for a row other than the first)
        # is a different random stream: check that row_offset is really what made them equal
        differ = 0
        for i, row in enumerate(self.x2[1:], 1):
            r = self.predict("jump", [row], options=opts)
            differ += (r.y[0], r.energy[0]) != (whole.y[i], whole.energy[i])
        self.assertGreater(differ, 0, "row_offset changed nothing")
        # the y_dim 2 model too
        whole2 = self.predict("two", self.x1, options=opts)
        a = self.predict("two", self.x1[:4], options=opts)
        b = self.predict("two", self.x1[4:], options=opts, row_offset=4)
        self.assertEqual(list(a.y) + list(b.y), list(whole2.y))
        self.srv.stop_clean(self)

    def test_narrower_kernels_warned(self):
        """An OPENBLAS_CORETYPE narrower than the CPU's widest kernels stands, with a warning
        in emberd's log; none without the variable (the suite runs with it unset)."""
        flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":", 1)[1].split())
        avx512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
        core = "Haswell" if avx512 else "Prescott"
        expect = avx512 or {"avx2", "fma"} <= flags  # a pre-AVX2 CPU has nothing narrower to run
        warning = "OPENBLAS_CORETYPE in the environment loads narrower kernels than this CPU's"
        self.assertNotIn(warning, self.srv.log())
        srv = self.start("--models", os.path.join(self.tmp, "repo"), "--workers", 1,
                         env={"OPENBLAS_CORETYPE": core})
        log = srv.log()
        self.assertIn("blas=%s" % core, log, "the variable stands")
        self.assertEqual(warning in log, expect, log)
        if expect:
            self.assertIn("OPENBLAS_CORETYPE=%s blas=%s cpu_kernels=%s" % (core, core, "SkylakeX" if avx512 else "Haswell"), log)
        code, resp, details = call(srv.stub.Predict, it.pb.PredictRequest(model="jump", x=self.x2[0]))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        srv.stop_clean(self)
        self.srv.stop_clean(self)

    def test_sample_returns_the_population(self):
        """return_samples: each row's final population (options.samples candidates, in y units,
        inside the model's bounds) and energies; its best candidate is Predict's answer for the
        same seed, since Sample and Predict run the same optimiser on the same random stream."""
        info = self.srv.stub.GetModel(it.pb.GetModelRequest(model="two"), timeout=it.RPC_TIMEOUT)
        opts = it.pb.InferenceOptions(seed=9, samples=200)
        rows = self.x1[:3]
        req = it.pb.SampleRequest(model="two", x=[v for r in rows for v in r], modes=2, return_samples=True)
        req.options.CopyFrom(opts)
        code, resp, details = call(self.srv.stub.Sample, req)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        pred = self.predict("two", rows, options=opts)
        self.assertEqual(len(resp.rows), 3)
        for r, row in enumerate(resp.rows):
            self.assertEqual(len(row.samples), 200 * 2)
            self.assertEqual(len(row.sample_energy), 200)
            for i, v in enumerate(row.samples):
                j = i % 2
                self.assertTrue(info.y_lo[j] - 1e-4 <= v <= info.y_hi[j] + 1e-4, "sample %d = %g" % (i, v))
            best = min(range(200), key=lambda i: (row.sample_energy[i], i))
            self.assertEqual(row.sample_energy[best], pred.energy[r])
            self.assertEqual(list(row.samples[2 * best:2 * best + 2]), list(pred.y[2 * r:2 * r + 2]))
        # without the flag, no population comes back
        req.return_samples = False
        code, resp, details = call(self.srv.stub.Sample, req)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual([len(r.samples) for r in resp.rows], [0, 0, 0])
        # a population too large for one message is refused up front
        big = it.pb.SampleRequest(model="two", x=[0.1] * 1000, return_samples=True,
                                  options=it.pb.InferenceOptions(samples=65536))
        self.expect(self.srv.stub.Sample, big, grpc.StatusCode.INVALID_ARGUMENT, "return_samples", "--max-message")
        self.srv.stop_clean(self)

    def test_sample_equals_cli(self):
        for model, path, q, rows, ydim in (("jump", self.jump, self.q2, self.x2, 1),
                                           ("two", self.two, self.q1, self.x1, 2)):
            local = self.cli("sample", "--model", path, "--input", q, "--seed", 3, "--modes", 3, "--polish", 2,
                             "--radius", 0.125, "--min-mass", 0.0625)
            req = it.pb.SampleRequest(model=model, x=[v for r in rows for v in r], modes=3, polish_steps=2,
                                      radius=0.125, min_mass=0.0625, options=it.pb.InferenceOptions(seed=3))
            code, resp, details = call(self.srv.stub.Sample, req)
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertEqual(resp.model_version, 1)
            self.assertEqual(resp.y_dim, ydim)
            self.assertEqual(len(resp.rows), len(rows))
            for row in resp.rows:
                self.assertTrue(1 <= len(row.modes) <= 3)
                energies = [m.energy for m in row.modes]
                self.assertEqual(energies, sorted(energies), "modes must come lowest energy first")
                for m in row.modes:
                    self.assertEqual(len(m.y), ydim)
            self.assertEqual(format_sample(resp, ydim), local, "model %s" % model)
            # Sample's defaults (modes 2, radius 0.25, min_mass 0.01) are the CLI's defaults
            local = self.cli("sample", "--model", path, "--input", q, "--seed", 8)
            req = it.pb.SampleRequest(model=model, x=[v for r in rows for v in r],
                                      options=it.pb.InferenceOptions(seed=8))
            code, resp, details = call(self.srv.stub.Sample, req)
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertEqual(format_sample(resp, ydim), local, "model %s, default mode options" % model)
        self.srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
