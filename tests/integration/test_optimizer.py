"""The chosen optimiser per request (InferenceOptions.optimizer, `--optimizer`): Langevin chains
on a dfo-trained model over gRPC equal local `ember predict --optimizer langevin` and the CLI's
remote mode; the model's own optimiser named explicitly equals the default; optimisers that do
not apply are INVALID_ARGUMENT, locally and remotely."""
import os
import random
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call, format_predict, format_sample  # noqa: E402

import grpc  # noqa: E402

O = None  # InferenceOptions, set in setUp (the stubs are generated at run time)


class Optimizer(it.EmberTest):
    @classmethod
    def setUpClass(cls):
        # one repository for every test: servers only read it
        repo = os.path.join(it.SCRATCH, "repo")
        data = it.jump_data(os.path.join(it.SCRATCH, "jump.csv"))
        cls.jump = os.path.join(repo, "jump", "1.safetensors")
        cls.flat = os.path.join(repo, "flat", "1.safetensors")
        for out, seed, extra in ((cls.jump, 3, []), (cls.flat, 5, ["--method", "mse"])):
            os.makedirs(os.path.dirname(out))
            subprocess.run([it.EMBER, "train", "--data", data, "--out", out, "--width", "32", "--steps", "80",
                            "--batch", "32", "--negatives", "16", "--seed", str(seed), "--samples", "256",
                            "--threads", "1", "--quiet"] + extra, check=True, timeout=it.CLI_TIMEOUT)
        cls.repo = repo

    def setUp(self):
        super().setUp()
        global O
        O = it.pb.InferenceOptions
        rng = random.Random(3)
        self.x = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(5)]
        self.q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], self.x)
        self.srv = self.start("--models", self.repo, "--workers", 2)

    def predict(self, model, code=grpc.StatusCode.OK, **opts):
        req = it.pb.PredictRequest(model=model, x=[v for r in self.x for v in r], options=O(**opts))
        got, resp, details = call(self.srv.stub.Predict, req)
        self.assertEqual(got, code, details)
        return resp if code == grpc.StatusCode.OK else details

    def test_langevin_on_a_dfo_model(self):
        args = ("--seed", 7, "--samples", 16, "--chain-steps", 8, "--energy")
        local = self.cli("predict", "--model", self.jump, "--input", self.q, "--optimizer", "langevin", *args)
        resp = self.predict("jump", seed=7, samples=16, optimizer=O.OPTIMIZER_LANGEVIN,
                            langevin=it.pb.LangevinOptions(chain_steps=8))
        self.assertEqual(format_predict(resp, 1), local)
        remote = self.cli("--server", self.srv.target, "predict", "--model", "jump", "--input", self.q,
                          "--optimizer", "langevin", *args)
        self.assertEqual(remote, local)
        dfo = self.cli("predict", "--model", self.jump, "--input", self.q, *args[:4], "--energy")
        self.assertNotEqual(dfo, local, "chains and DFO answer differently")
        # Sample with chains: its modes come from the chains' final states
        local = self.cli("sample", "--model", self.jump, "--input", self.q, "--modes", 2, "--optimizer",
                         "langevin", "--seed", 7, "--samples", 16, "--chain-steps", 8)
        req = it.pb.SampleRequest(model="jump", x=[v for r in self.x for v in r], modes=2,
                                  options=O(seed=7, samples=16, optimizer=O.OPTIMIZER_LANGEVIN,
                                            langevin=it.pb.LangevinOptions(chain_steps=8)))
        code, sresp, details = call(self.srv.stub.Sample, req)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(format_sample(sresp, 1), local)
        self.srv.stop_clean(self)

    def test_explicit_own_optimizer_equals_default(self):
        plain = self.predict("jump", seed=4, samples=64)
        named = self.predict("jump", seed=4, samples=64, optimizer=O.OPTIMIZER_DFO)
        self.assertEqual(list(named.y), list(plain.y))
        self.assertEqual(list(named.energy), list(plain.energy))
        self.srv.stop_clean(self)

    def test_refusals(self):
        self.assertIn("prefix nets", self.predict("jump", grpc.StatusCode.INVALID_ARGUMENT,
                                                  optimizer=O.OPTIMIZER_ARDFO))
        self.assertIn("no energy", self.predict("flat", grpc.StatusCode.INVALID_ARGUMENT,
                                                optimizer=O.OPTIMIZER_DFO))
        self.assertIn("optimizer 9", self.predict("jump", grpc.StatusCode.INVALID_ARGUMENT, optimizer=9))
        self.assertIn("Langevin models only (or to optimizer OPTIMIZER_LANGEVIN", self.predict(
            "jump", grpc.StatusCode.INVALID_ARGUMENT, langevin=it.pb.LangevinOptions(chain_steps=8)))
        # the compute limit counts chain steps: 4096 chains x 1000 steps of this net is too much
        self.assertIn("chain steps", self.predict(
            "jump", grpc.StatusCode.INVALID_ARGUMENT, samples=4096, optimizer=O.OPTIMIZER_LANGEVIN,
            langevin=it.pb.LangevinOptions(chain_steps=100000)))
        for where in ((), ("--server", self.srv.target)):
            model = "flat" if where else self.flat
            code, err = self.cli_fails(*where, "predict", "--model", model, "--input", self.q,
                                       "--optimizer", "langevin")
            self.assertEqual(code, 2, err)
            self.assertIn("no energy", err)
        self.srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
