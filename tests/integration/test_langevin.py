"""Per-request Langevin chain options (InferenceOptions.langevin) and sample-then-refine
(refine_steps, refine_lr) against a real emberd: they change the answer, equal the local CLI
byte for byte (through the remote CLI and through raw gRPC), bad values are refused with a
useful message, GetModel reports a Langevin model's chain defaults, and requests that differ
only in chain options never share a batch."""
import json
import os
import random
import struct
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

INVALID = grpc.StatusCode.INVALID_ARGUMENT

# Few chains, so that every chain setting visibly moves the answer of this small model (with
# hundreds of chains some chain always reaches the same bound).
CHAINS = 8


def patch_metadata(src, dst, **meta):
    """Copies a checkpoint with some __metadata__ strings replaced (e.g. inference defaults that
    `ember train` has no flag for)."""
    with open(src, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n].decode())
    header["__metadata__"].update({k.replace("__", "."): str(v) for k, v in meta.items()})
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])
    return dst


class Langevin(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"), n=300)
        lang = ("--method", "langevin", "--chain-steps", 5)
        self.lang = self.train(os.path.join(self.repo, "lang", "1.safetensors"), data, *lang, steps=50,
                               negatives=8, samples=CHAINS)
        # the same network with a second chain and refine on by default
        self.lang_on = patch_metadata(self.lang, os.path.join(self.repo, "lang_on", "1.safetensors"),
                                      infer__again_steps=3, infer__again_step=0.01, infer__refine_steps=2)
        self.dfo = self.train(os.path.join(self.repo, "dfo", "1.safetensors"), data, steps=30, negatives=8)
        rng = random.Random(5)
        self.rows = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(4)]
        self.q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], self.rows)
        self.x = [v for r in self.rows for v in r]

    def remote(self, srv, *args):
        return self.cli("--server", srv.target, *args)

    def test_overrides_equal_local(self):
        srv = self.start("--models", self.repo)
        variants = (
            (),
            ("--chain-steps", 3),
            ("--schedule", "poly"),
            ("--schedule", "poly", "--gamma", 0),
            ("--step-init", 0.05, "--step-final", 0.001),
            ("--noise-scale", 0),
            ("--delta-max", 0.01),  # binding (the default clip, 0.5, rarely is)
            ("--again-steps", 5, "--again-step", 0.01),
            ("--refine", 3, "--refine-lr", 0.2),
        )
        base = ("--input", self.q, "--seed", 7, "--samples", CHAINS)
        seen = {}
        for extra in variants:
            local = self.cli("predict", "--model", self.lang, "--energy", *base, *extra)
            self.assertEqual(self.remote(srv, "predict", "--model", "lang", "--energy", *base, *extra), local, extra)
            self.assertNotIn(local, seen, "%s gives the answer of %s" % (extra, seen.get(local)))
            seen[local] = extra
        for extra in variants[:8]:  # sample ignores refine
            args = ("--input", self.q, "--seed", 3, "--samples", 16, "--modes", 3, "--min-mass", 0) + extra
            local = self.cli("sample", "--model", self.lang, *args)
            self.assertEqual(self.remote(srv, "sample", "--model", "lang", *args), local, extra)
            self.assertEqual(self.remote(srv, "sample", "--model", "lang", "--chunk-rows", 3, *args), local, extra)
        # raw gRPC: the server alone, without the remote CLI's translation
        opts = it.pb.InferenceOptions(samples=CHAINS, seed=7, langevin=it.pb.LangevinOptions(
            chain_steps=3, schedule=it.pb.LangevinOptions.SCHEDULE_POLY, gamma=0.0, again_steps=5, again_step=0.01))
        resp = srv.stub.Predict(it.pb.PredictRequest(model="lang", x=self.x, options=opts), timeout=it.RPC_TIMEOUT)
        local = self.cli("predict", "--model", self.lang, "--energy", *base, "--chain-steps", 3, "--schedule", "poly",
                         "--gamma", 0, "--again-steps", 5, "--again-step", 0.01)
        self.assertEqual(it.format_predict(resp, 1), local)
        # 0 sent with presence turns off a default that is on: the second chain and refine
        off = ("--again-steps", 0, "--refine", 0)
        for extra in ((), off):
            local = self.cli("predict", "--model", self.lang_on, "--energy", *base, *extra)
            self.assertEqual(self.remote(srv, "predict", "--model", "lang_on", "--energy", *base, *extra), local, extra)
        self.assertEqual(self.cli("predict", "--model", self.lang_on, "--energy", *base, *off),
                         self.cli("predict", "--model", self.lang, "--energy", *base))
        self.assertNotEqual(self.cli("predict", "--model", self.lang_on, "--energy", *base),
                            self.cli("predict", "--model", self.lang, "--energy", *base))
        # a DFO model takes refine too
        local = self.cli("predict", "--model", self.dfo, "--energy", "--input", self.q, "--seed", 2, "--samples", 64,
                         "--refine", 4)
        self.assertEqual(self.remote(srv, "predict", "--model", "dfo", "--energy", "--input", self.q, "--seed", 2,
                                     "--samples", 64, "--refine", 4), local)
        srv.stop_clean(self)

    def test_bad_values(self):
        srv = self.start("--models", self.repo)
        L, O = it.pb.LangevinOptions, it.pb.InferenceOptions

        def predict(model, **kw):
            return it.pb.PredictRequest(model=model, x=self.x, options=O(**kw))

        cases = (
            (predict("lang", langevin=L(chain_steps=200000)), "langevin.chain_steps", "1..100000", "200000"),
            (predict("lang", langevin=L(again_steps=4000000000)), "again_steps", "4000000000"),
            (predict("lang", langevin=L(step_init=-0.1)), "initial step", "-0.1"),
            (predict("lang", langevin=L(step_final=0.9)), "final step", "0.9"),
            (predict("lang", langevin=L(gamma=11)), "gamma", "11"),
            (predict("lang", langevin=L(noise_scale=-1)), "noise scale", "-1"),
            (predict("lang", langevin=L(delta_max=float("nan"))), "change clip"),
            (predict("lang", langevin=L(again_steps=2, again_step=20)), "second-chain step", "20"),
            (predict("lang", langevin=L(schedule=7)), "langevin.schedule 7", "SCHEDULE_POLY"),
            (predict("lang", refine_steps=20000), "refine_steps", "0..10000"),
            (predict("lang", refine_steps=2, refine_lr=-1), "refine step", "-1"),
            (predict("dfo", langevin=L(chain_steps=3)), "Langevin models only", "'dfo' is of method dfo"),
            (predict("dfo", langevin=L(noise_scale=0)), "Langevin models only"),
        )
        for req, *needles in cases:
            self.expect(srv.stub.Predict, req, INVALID, "options", *needles)
        self.expect(srv.stub.Predict, predict("lang", samples=4096, langevin=L(chain_steps=100000)), INVALID,
                    "GFLOP", "4096 chains x 100000 chain steps", "--max-request-gflop", "shorter chains")
        self.expect(srv.stub.Sample, it.pb.SampleRequest(model="dfo", x=self.x, options=O(langevin=L(gamma=1))),
                    INVALID, "Langevin models only")
        # an empty langevin message sets nothing: a DFO model answers
        srv.stub.Predict(predict("dfo", samples=64, langevin=L()), timeout=it.RPC_TIMEOUT)
        # the compute limit counts chain steps: fine at 10 steps, refused at 100000 with a small limit
        small = self.start("--models", self.repo, "--max-request-gflop", 1)
        small.stub.Predict(predict("lang", samples=CHAINS), timeout=it.RPC_TIMEOUT)
        self.expect(small.stub.Predict, predict("lang", samples=256, langevin=L(chain_steps=100000)), INVALID,
                    "GFLOP", "256 chains x 100000 chain steps")
        small.stop_clean(self)
        # the remote CLI refuses what local mode refuses, with local mode's message
        for args in (("--chain-steps", 3), ("--again-steps", 0)):
            code, local = self.cli_fails("predict", "--model", self.dfo, "--input", self.q, *args)
            rcode, remote = self.cli_fails("--server", srv.target, "predict", "--model", "dfo", "--input", self.q, *args)
            self.assertEqual((rcode, remote), (code, local.replace(self.dfo, "dfo")))
            self.assertIn("Langevin models only", remote)
        for args in (("--chain-steps", 0), ("--schedule", "sgld"), ("--step-final", 0.9), ("--refine", 2,
                                                                                              "--refine-lr", 0)):
            code, local = self.cli_fails("predict", "--model", self.lang, "--input", self.q, *args)
            rcode, remote = self.cli_fails("--server", srv.target, "predict", "--model", "lang", "--input", self.q, *args)
            self.assertEqual((rcode, remote), (code, local), args)
        srv.stop_clean(self)

    def test_get_model_defaults(self):
        srv = self.start("--models", self.repo)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="lang"), timeout=it.RPC_TIMEOUT)
        self.assertEqual(info.method, "langevin")
        d, l = info.defaults, info.defaults.langevin
        self.assertEqual(d.samples, CHAINS)
        self.assertEqual(l.chain_steps, 10)  # twice the training chains
        self.assertEqual(l.schedule, it.pb.LangevinOptions.SCHEDULE_IBC)
        self.assertAlmostEqual(l.step_init, 0.5, places=6)  # the langevin recipe's (train.c)
        self.assertAlmostEqual(l.step_final, 1e-5, places=9)
        for name, want in (("gamma", 0.55), ("noise_scale", 1.0), ("delta_max", 0.5), ("again_steps", 0)):
            self.assertTrue(l.HasField(name), name)
            self.assertAlmostEqual(getattr(l, name), want, places=6)
        self.assertAlmostEqual(l.again_step, 1e-5, places=9)
        self.assertTrue(d.HasField("refine_steps"))
        self.assertEqual(d.refine_steps, 0)
        self.assertAlmostEqual(d.refine_lr, 0.05, places=6)
        on = srv.stub.GetModel(it.pb.GetModelRequest(model="lang_on"), timeout=it.RPC_TIMEOUT).defaults
        self.assertEqual((on.langevin.again_steps, on.refine_steps), (3, 2))
        self.assertAlmostEqual(on.langevin.again_step, 0.01, places=6)
        listed = {m.name: m for m in srv.stub.ListModels(it.pb.ListModelsRequest(), timeout=it.RPC_TIMEOUT).models}
        self.assertEqual(listed["lang"].defaults, d)
        dfo = listed["dfo"].defaults
        self.assertFalse(dfo.HasField("langevin"))
        self.assertTrue(dfo.HasField("refine_steps"))
        text = self.remote(srv, "info", "--model", "lang_on")
        self.assertIn("8 chains of 10 steps, ibc schedule, step 0.5 -> 1e-05, gamma 0.55, noise 1, change clip 0.5",
                      text)
        self.assertIn("3 steps at step 0.01", text)
        self.assertIn("2 gradient steps from the best candidates, step 0.05", text)
        srv.stop_clean(self)

    def test_different_chain_options_never_share_a_batch(self):
        L, O = it.pb.LangevinOptions, it.pb.InferenceOptions
        variants = [
            O(samples=CHAINS, seed=1),
            O(samples=CHAINS, seed=1, langevin=L(chain_steps=3)),
            O(samples=CHAINS, seed=1, langevin=L(schedule=L.SCHEDULE_POLY)),
            O(samples=CHAINS, seed=1, langevin=L(noise_scale=0)),
            O(samples=CHAINS, seed=1, langevin=L(delta_max=0.01)),
            O(samples=CHAINS, seed=1, langevin=L(again_steps=4, again_step=0.01)),
            O(samples=CHAINS, seed=1, refine_steps=3),
            O(samples=CHAINS, seed=1, refine_steps=3, refine_lr=0.2),
        ]
        reqs = [it.pb.PredictRequest(model="lang", x=self.x, options=o) for o in variants]
        alone_srv = self.start("--models", self.repo)
        alone = [alone_srv.stub.Predict(r, timeout=it.RPC_TIMEOUT) for r in reqs]
        self.assertEqual(len({tuple(a.y) for a in alone}), len(alone), "each variant must change the answer")
        # one worker that waits 400 ms for a batch to fill: everything sent at once queues together
        srv = self.start("--models", self.repo, "--workers", 1, "--max-delay-us", 400000)
        results = [None] * (2 * len(reqs))
        go = threading.Barrier(len(results))

        def send(i):
            go.wait(timeout=30)
            results[i] = it.call(srv.stub.Predict, reqs[i % len(reqs)])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for i, (code, resp, details) in enumerate(results):
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertEqual((list(resp.y), list(resp.energy)), (list(alone[i % len(reqs)].y),
                                                                  list(alone[i % len(reqs)].energy)), variants[i % len(reqs)])
        stats = srv.stub.GetModel(it.pb.GetModelRequest(model="lang"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual(stats.batched_requests, len(results))
        self.assertGreaterEqual(stats.batches, len(reqs))  # never two option sets in one batch
        self.assertLess(stats.batches, len(results), "identical requests should have shared batches")
        srv.stop_clean(self)
        alone_srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
