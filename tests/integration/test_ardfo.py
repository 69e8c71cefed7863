"""Method B (ardfo: one energy net per y-prefix, autoregressive DFO) served by a real emberd:
Predict and Sample equal the local CLI byte for byte (through the remote CLI and raw gRPC),
GetModel/ListModels and remote info describe the model, Langevin options are refused, the
--max-request-gflop estimate counts every prefix net, the remote CLI sizes its requests for
y_dim times the work per candidate, and batched requests with different seeds get their solo
answers."""
import os
import random
import re
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

INVALID = grpc.StatusCode.INVALID_ARGUMENT
X_DIM, Y_DIM, WIDTH, DEPTH = 2, 3, 32, 2


def ar_data(path, n=400, seed=6):
    """x = (a, b), y = (s + 0.5 b, 0.25 a - 0.5 s, a b) with s = sign(a): y_dim 3, a jump at
    a = 0 in the first two coordinates."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = it.grid_value(rng), it.grid_value(rng)
        s = 1.0 if a > 0 else -1.0
        rows.append((a, b, s + 0.5 * b, 0.25 * a - 0.5 * s, a * b))
    return it.write_csv(path, ["a", "b", "y0", "y1", "y2"], rows)


def resnet_layers(in_y):
    """(in, out) of each dense layer of the energy nets here (resnet WIDTH x DEPTH, x_dim 2)."""
    return [(X_DIM + in_y, WIDTH)] + [(WIDTH, WIDTH)] * DEPTH + [(WIDTH, 1)]


def prefix_params():
    return sum(i * o + o for j in range(1, Y_DIM + 1) for i, o in resnet_layers(j))


def row_flops(in_y):
    """2 x ember_net_row_macs of the net that sees in_y coordinates of y (the x part of the
    first layer excluded: it is fused once per query)."""
    layers = resnet_layers(in_y)
    return 2.0 * (in_y * layers[0][1] + sum(i * o for i, o in layers[1:]))


def round_flops():
    """FLOPs per candidate per DFO round of the ardfo model, as ember_infer_flops counts them:
    the prefix nets of lengths 1..y_dim, each of which every round runs."""
    return sum(row_flops(j) for j in range(1, Y_DIM + 1))


class Ardfo(it.EmberTest):
    _model = None  # trained once per run, published into each test's repository

    def setUp(self):
        super().setUp()
        if Ardfo._model is None:
            d = os.path.join(it.SCRATCH, "ardfo-model")
            os.makedirs(d, exist_ok=True)
            data = ar_data(os.path.join(d, "ar.csv"))
            out = os.path.join(d, "ard.safetensors")
            # the model's own default samples (ardfo: 2048), so GetModel's defaults are ardfo's
            self.cli("train", "--method", "ardfo", "--y-dim", Y_DIM, "--data", data, "--out", out, "--steps", 100,
                     "--width", WIDTH, "--batch", 64, "--negatives", 32, "--seed", 3, "--threads", 1, "--quiet")
            Ardfo._model = out
        self.repo = os.path.join(self.tmp, "repo")
        os.makedirs(os.path.join(self.repo, "ard"))
        self.model = os.path.join(self.repo, "ard", "1.safetensors")
        self.publish(Ardfo._model, self.model)
        rng = random.Random(11)
        self.rows = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(5)]
        self.q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], self.rows)
        self.x = [v for r in self.rows for v in r]

    def remote(self, srv, *args):
        return self.cli("--server", srv.target, *args)

    def test_answers_equal_local(self):
        srv = self.start("--models", self.repo)
        variants = (
            (),
            ("--seed", 7),
            ("--seed", 7, "--samples", 512, "--iters", 4, "--sigma", 0.25, "--shrink", 0.75, "--temperature", 0.5),
            ("--seed", 2, "--refine", 3, "--refine-lr", 0.1),  # refine descends the whole-y energy
        )
        seen = {}
        for extra in variants:
            local = self.cli("predict", "--model", self.model, "--input", self.q, "--energy", *extra)
            self.assertEqual(len(local.splitlines()), 1 + len(self.rows), local)
            self.assertEqual(self.remote(srv, "predict", "--model", "ard", "--input", self.q, "--energy", *extra),
                             local, extra)
            self.assertEqual(self.remote(srv, "predict", "--model", "ard", "--input", self.q, "--energy",
                                         "--chunk-rows", 2, *extra), local, extra)
            self.assertNotIn(local, seen, "%s gives the answer of %s" % (extra, seen.get(local)))
            seen[local] = extra
        for extra in (("--seed", 4, "--modes", 3, "--radius", 0.125, "--min-mass", 0.0625, "--polish", 2),
                      ("--seed", 9, "--modes", 2, "--min-mass", 0, "--samples", 512)):
            local = self.cli("sample", "--model", self.model, "--input", self.q, *extra)
            self.assertEqual(self.remote(srv, "sample", "--model", "ard", "--input", self.q, *extra), local, extra)
            self.assertEqual(self.remote(srv, "sample", "--model", "ard", "--input", self.q, "--chunk-rows", 3,
                                         *extra), local, extra)
        # raw gRPC: the server alone, without the remote CLI's translation
        opts = it.pb.InferenceOptions(samples=512, iterations=4, sigma=0.25, seed=7)
        args = ("--samples", 512, "--iters", 4, "--sigma", 0.25, "--seed", 7)
        pred = srv.stub.Predict(it.pb.PredictRequest(model="ard", x=self.x, options=opts), timeout=it.RPC_TIMEOUT)
        self.assertEqual((pred.y_dim, pred.model_version), (Y_DIM, 1))
        self.assertEqual(it.format_predict(pred, Y_DIM),
                         self.cli("predict", "--model", self.model, "--input", self.q, "--energy", *args))
        samp = srv.stub.Sample(it.pb.SampleRequest(model="ard", x=self.x, options=opts, modes=3, min_mass=-1,
                                                   return_samples=True), timeout=it.RPC_TIMEOUT)
        self.assertEqual(it.format_sample(samp, Y_DIM),
                         self.cli("sample", "--model", self.model, "--input", self.q, "--modes", 3, "--min-mass", 0,
                                  *args))
        # the returned population is the final one under the whole-y energy (for modes, ardfo
        # resamples in independent groups, so it is not Predict's population): the best mode is
        # at least as low as its best sample
        for i, row in enumerate(samp.rows):
            self.assertEqual((len(row.samples), len(row.sample_energy)), (512 * Y_DIM, 512))
            self.assertLessEqual(row.modes[0].energy, min(row.sample_energy))
        srv.stop_clean(self)

    def test_describe(self):
        srv = self.start("--models", self.repo)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="ard"), timeout=it.RPC_TIMEOUT)
        self.assertEqual((info.name, info.version, list(info.versions)), ("ard", 1, [1]))
        self.assertEqual((info.method, info.x_dim, info.y_dim), ("ardfo", X_DIM, Y_DIM))
        self.assertEqual((info.arch, info.width, info.depth), ("resnet", WIDTH, DEPTH))
        self.assertEqual((len(info.y_lo), len(info.y_hi)), (Y_DIM, Y_DIM))
        for lo, hi in zip(info.y_lo, info.y_hi):
            self.assertLess(lo, hi)
        # the checkpoint's defaults (ember train's for ardfo), as local info prints them
        d = info.defaults
        local = self.cli("info", "--model", self.model)
        self.assertIn("method             ardfo\n", local)
        self.assertIn("inference          samples %d, iters %d, sigma %g, shrink %g, temperature %g\n" %
                      (d.samples, d.iterations, d.sigma, d.shrink, d.temperature), local)
        self.assertGreaterEqual(d.samples, 64)
        self.assertGreaterEqual(d.iterations, 1)
        self.assertTrue(0 < d.sigma and 0 < d.shrink <= 1 and d.temperature > 0, d)
        self.assertTrue(d.HasField("refine_steps"))  # refine applies to any energy model
        self.assertEqual(d.refine_steps, 0)
        self.assertAlmostEqual(d.refine_lr, 0.05, places=6)
        self.assertFalse(d.HasField("langevin"))
        listed = {m.name: m for m in srv.stub.ListModels(it.pb.ListModelsRequest(), timeout=it.RPC_TIMEOUT).models}
        self.assertEqual(listed["ard"].method, "ardfo")
        self.assertEqual(listed["ard"].defaults, d)
        # remote info: every prefix net's parameters; the inference line as local info's
        text = self.remote(srv, "info", "--model", "ard")
        fields = {l.split(None, 1)[0]: l.split(None, 1)[1].strip() for l in text.splitlines() if l.strip()}
        self.assertEqual(fields["method"], "ardfo")
        self.assertEqual(fields["network"], "resnet %dx%d (%d parameters in %d nets, one per y-prefix)" %
                         (WIDTH, DEPTH, prefix_params(), Y_DIM))
        self.assertIn([l for l in local.splitlines() if l.startswith("inference")][0] + "\n", text)
        models = self.remote(srv, "models").splitlines()
        self.assertEqual(len(models), 2, models)
        self.assertEqual(models[1].split()[:3], ["ard", "1", "ardfo"])
        srv.stop_clean(self)

    def test_langevin_options_refused(self):
        srv = self.start("--models", self.repo)
        L, O = it.pb.LangevinOptions, it.pb.InferenceOptions
        for lang in (L(chain_steps=3), L(schedule=L.SCHEDULE_POLY), L(noise_scale=0), L(again_steps=0),
                     L(step_init=0.05)):
            self.expect(srv.stub.Predict, it.pb.PredictRequest(model="ard", x=self.x, options=O(langevin=lang)),
                        INVALID, "options.langevin", "Langevin models only", "'ard' is of method ardfo")
            self.expect(srv.stub.Sample, it.pb.SampleRequest(model="ard", x=self.x, options=O(langevin=lang)),
                        INVALID, "Langevin models only", "ardfo")
        # an empty langevin message sets nothing: the model answers
        srv.stub.Predict(it.pb.PredictRequest(model="ard", x=self.x, options=O(samples=64, langevin=L())),
                         timeout=it.RPC_TIMEOUT)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="ard"), timeout=it.RPC_TIMEOUT)
        self.assertEqual(dict(info.stats.failures).get("INVALID_ARGUMENT"), 10)
        # the remote CLI refuses what local mode refuses, with local mode's message
        for args in (("--chain-steps", 3), ("--again-steps", 0), ("--noise-scale", 0)):
            code, local = self.cli_fails("predict", "--model", self.model, "--input", self.q, *args)
            rcode, remote = self.cli_fails("--server", srv.target, "predict", "--model", "ard", "--input", self.q, *args)
            self.assertEqual((rcode, remote), (code, local.replace(self.model, "ard")), args)
            self.assertIn("Langevin models only", remote)
        srv.stop_clean(self)

    def test_request_gflop_counts_every_prefix_net(self):
        """With --max-request-gflop 1, one row of S samples x 3 iterations is allowed exactly
        while S x 3 x (FLOPs of all three prefix nets) <= 1e9: the server counts the y_dim
        passes per iteration (ember_infer_flops), not the whole-y net's alone (which would
        allow three times as many samples)."""
        srv = self.start("--models", self.repo, "--max-request-gflop", 1)
        per = 3 * round_flops()  # one row, one sample, 3 iterations
        fit = int(1e9 // per)
        self.assertGreater(fit, 1000)
        self.assertLess((fit + 1) * 3 * row_flops(Y_DIM) * 2, 1e9, "the whole-y net alone would allow fit + 1")
        O = it.pb.InferenceOptions
        x1 = self.x[:X_DIM]
        resp = srv.stub.Predict(it.pb.PredictRequest(model="ard", x=x1, options=O(samples=fit, iterations=3, seed=1)),
                                timeout=it.RPC_TIMEOUT)
        self.assertEqual(len(resp.y), Y_DIM)
        self.expect(srv.stub.Predict, it.pb.PredictRequest(model="ard", x=x1, options=O(samples=fit + 1, iterations=3)),
                    INVALID, "GFLOP", "1 rows x %d samples x 3 iterations x 3 prefix nets" % (fit + 1),
                    "--max-request-gflop")
        self.expect(srv.stub.Sample, it.pb.SampleRequest(model="ard", x=x1, options=O(samples=fit + 1, iterations=3)),
                    INVALID, "GFLOP", "3 prefix nets")
        # a request's estimate is rows x the per-row count
        rows = 10
        details = self.expect(srv.stub.Predict, it.pb.PredictRequest(model="ard", x=self.x[:X_DIM] * rows,
                                                                     options=O(samples=fit, iterations=3)),
                              INVALID, "%d rows x %d samples" % (rows, fit))
        m = re.search(r"needs (\d+) GFLOP", details)
        self.assertIsNotNone(m, details)
        self.assertEqual(m.group(1), "%.0f" % (rows * fit * per / 1e9))
        srv.stop_clean(self)

    def test_remote_cli_sizes_requests_for_prefix_nets(self):
        """The remote CLI keeps a request near 2^21 candidate evaluations; an ardfo candidate
        costs y_dim evaluations per iteration, so 65536 samples x 6 iterations x 3 nets fit one
        row per request (counting the whole-y net alone would send both rows together)."""
        srv = self.start("--models", self.repo, "--workers", 2)
        q2 = it.write_csv(os.path.join(self.tmp, "q2.csv"), ["a", "b"], self.rows[:2])
        args = ("--input", q2, "--energy", "--samples", 65536, "--iters", 6, "--seed", 5)
        self.assertEqual(int((1 << 21) / (65536 * 6 * Y_DIM)), 1)
        remote = self.remote(srv, "predict", "--model", "ard", *args)
        stats = srv.stub.GetModel(it.pb.GetModelRequest(model="ard"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual((stats.requests, stats.ok), (2, 2))
        self.assertEqual(remote, self.cli("predict", "--model", self.model, "--threads", 2, *args))
        srv.stop_clean(self)

    def test_batched_requests_equal_solo(self):
        O = it.pb.InferenceOptions
        reqs = [it.pb.PredictRequest(model="ard", x=self.x[:2 * X_DIM], options=O(seed=s), row_offset=3 * (s % 2))
                for s in range(1, 9)]
        reqs += [it.pb.SampleRequest(model="ard", x=self.x[2 * X_DIM:], options=O(seed=s, samples=512), modes=2)
                 for s in range(1, 5)]

        def rpc(stub, r):
            return stub.Predict if isinstance(r, it.pb.PredictRequest) else stub.Sample

        alone_srv = self.start("--models", self.repo)
        alone = [rpc(alone_srv.stub, r)(r, timeout=it.RPC_TIMEOUT) for r in reqs]
        self.assertEqual(len({tuple(a.y) for a in alone[:8]}), 8, "every seed must change the answer")
        # one worker that waits 400 ms for a batch to fill: everything sent at once queues together
        srv = self.start("--models", self.repo, "--workers", 1, "--max-delay-us", 400000)
        results = [None] * len(reqs)
        go = threading.Barrier(len(reqs))

        def send(i):
            go.wait(timeout=30)
            results[i] = it.call(rpc(srv.stub, reqs[i]), reqs[i])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for i, (code, resp, details) in enumerate(results):
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertEqual(resp, alone[i], "request %d" % i)
        stats = srv.stub.GetModel(it.pb.GetModelRequest(model="ard"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual(stats.batched_requests, len(reqs))
        self.assertGreaterEqual(stats.batches, 2)  # Predict and Sample never share a batch
        self.assertLess(stats.batches, len(reqs), "requests differing only in seed should have shared batches")
        srv.stop_clean(self)
        alone_srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
