"""python/ember_torch against ember, both directions (docs/torch.md):

- PyTorch -> ember: models of every method built and trained a few steps with ember_torch,
  exported with save_ember; ember's own energies and dE/dy on the file (tests/energies.c,
  $EMBER_ENERGIES) equal ember_torch's, and emberd serving the file answers Predict as
  ember_torch.predict does for the same seed (the same candidates: ember's streams), with the
  answer's energy equal under both; a new version written from PyTorch hot-reloads.
- ember -> PyTorch: checkpoints trained by `ember train` (every method, spectral
  normalisation, mlp) load with load_ember, with equal energies and dE/dy, equal `ember predict`
  answers, and fit_stats reproducing the normalisation and bounds ember fitted.
- Image models (the encoder) both ways: `ember predict` on an image .npz equals
  ember_torch.predict on its images (both heads, with and without extra observations).
- ember_torch's own pieces: finite-difference checks of its gradients (energies, spectral
  normalisation, the gradient penalty, ardfo's corrected loss, the encoder) and safetensors
  refusals.
"""
import os
import random
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import ember_torch as et  # noqa: E402
from ember_torch import safetensors as st  # noqa: E402
from ember_torch import training as ettrain  # noqa: E402

torch.set_num_threads(1)  # reproducible and light on a shared machine

# Tolerances (float32 on both sides; ember's sgemm and PyTorch's kernels sum in other orders):
# |a - b| <= TOL * max(1, |a|, |b|) for energies, dE/dy and mse outputs.
TOL = 2e-6

SMALL = dict(width=16, depth=2, batch=16, negatives=8, steps=3)


def rows_data(n=120, seed=3, x_dim=2, y_dim=2):
    """x on a grid of binary fractions (exact in float32 and in CSV), y a function of x."""
    rng = random.Random(seed)
    x = np.array([[it.grid_value(rng) for _ in range(x_dim)] for _ in range(n)], dtype=np.float32)
    y = np.stack([np.round((x[:, 0] + 0.5 * x[:, -1] * j) * 64) / 64 for j in range(y_dim)], 1)
    return x, y.astype(np.float32)


class EmberTorch(it.EmberTest):
    def energies_ember(self, path, xn, yn):
        """ember's (tests/energies.c) values for rows xn (R, x_dim), yn (R, d) or None: a list
        per row of floats (per net: energy then dE/dy; mse: the outputs)."""
        rows = os.path.join(self.tmp, "rows.txt")
        a = xn if yn is None else np.concatenate([xn, yn], axis=1)
        np.savetxt(rows, a.astype(np.float64), fmt="%.9g", delimiter=",")
        r = subprocess.run([os.environ["EMBER_ENERGIES"], path, rows], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=it.CLI_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        return np.array([[float(v) for v in line.split(",")] for line in r.stdout.split()])

    def energies_torch(self, model, xn, yn):
        """The same values from ember_torch, laid out as energies_ember's."""
        xt = torch.from_numpy(xn)
        if model.method == "mse":
            with torch.no_grad():
                return model(xt).numpy().astype(np.float64)
        cols = []
        js = range(1, model.y_dim + 1) if model.method == "ardfo" else [model.y_dim]
        for j in js:
            e, g = model.energy_and_grad(xt, torch.from_numpy(yn[:, None, :j].copy()), j)
            cols += [e.numpy()[:, :1], g.numpy()[:, 0, :]]
        return np.concatenate(cols, axis=1).astype(np.float64)

    def assert_close(self, a, b, what):
        self.assertEqual(a.shape, b.shape, what)
        err = np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
        self.assertLessEqual(err.max(), TOL, "%s: off by %g (relative) at %s" % (what, err.max(),
                                                                                np.unravel_index(err.argmax(), err.shape)))
        return err.max()

    def check_energies(self, model, path, seed=0):
        rng = np.random.default_rng(seed)
        xn = rng.normal(size=(37, model.x_dim)).astype(np.float32)
        yn = None if model.method == "mse" else rng.uniform(-1.5, 1.5, size=(37, model.y_dim)).astype(np.float32)
        what = "%s %s%s" % (model.method, model.arch, " sn" if model.spectral_norm else "")
        err = self.assert_close(self.energies_ember(path, xn, yn), self.energies_torch(model, xn, yn), what)
        print("     %s: energies and dE/dy within %.1e (relative)" % (what, err))
        return err


CASES = [  # (method, extra recipe options)
    ("dfo", {}),
    ("dfo", {"arch": "mlp", "depth": 3}),
    ("dfo", {"spectral_norm": True}),
    ("dfo", {"arch": "mlp", "depth": 3, "spectral_norm": True}),
    ("ardfo", {}),
    ("ardfo", {"arch": "mlp", "depth": 1}),
    ("langevin", {"chain_steps": 3, "uniform_negatives": 2}),
    ("langevin", {"chain_steps": 3, "spectral_norm": True}),
    ("mse", {}),
]


class TorchToEmber(EmberTorch):
    def test_energies_every_method(self):
        x, y = rows_data()
        for k, (method, extra) in enumerate(CASES):
            model = et.train(x, y, method=method, seed=k, **dict(SMALL, **extra))
            path = os.path.join(self.tmp, "%d-%s.safetensors" % (k, method))
            et.save_ember(model, path)
            self.check_energies(model, path, seed=k)
            info = self.cli("info", "--model", path)
            self.assertIn(method, info)
            # and back: the file loads into ember_torch as the model it was
            back = et.load_ember(path)
            for (n1, a), (n2, b) in zip(sorted(model.state_dict().items()), sorted(back.state_dict().items())):
                self.assertEqual(n1, n2)
                self.assertTrue(torch.equal(a, b), n1)
            for key, v in model.stats().items():
                np.testing.assert_array_equal(v, back.stats()[key])

    def test_predict_served_by_emberd(self):
        """A model trained in PyTorch, exported into emberd's repository: Predict answers as
        ember_torch.predict (DFO on the PyTorch energies, ember's streams) for the same seed."""
        x, y = rows_data(x_dim=2, y_dim=2)
        repo = os.path.join(self.tmp, "repo")
        models = {}
        for k, method in enumerate(("dfo", "ardfo", "langevin", "mse")):
            m = et.train(x, y, method=method, seed=10 + k, chain_steps=3, **SMALL)
            m.options["infer.samples"] = 128
            if method == "langevin":
                m.options["langevin.steps"] = 6
            os.makedirs(os.path.join(repo, method))
            et.save_ember(m, os.path.join(repo, method, "1.safetensors"))
            models[method] = m
        srv = self.start("--models", repo, "--workers", 1)
        q = x[:9]
        for method, m in models.items():
            for seed, offset in ((0, 0), (77, 5)):
                req = it.pb.PredictRequest(model=method, x=q.reshape(-1).tolist(), row_offset=offset,
                                           options=it.pb.InferenceOptions(seed=seed))
                code, resp, details = call(srv.stub.Predict, req)
                self.assertEqual(code, grpc.StatusCode.OK, details)
                ys = np.array(resp.y, dtype=np.float32).reshape(len(q), 2)
                yt, et_energy = et.predict(m, q, seed=seed, row_offset=offset)
                np.testing.assert_allclose(ys, yt, rtol=1e-6, atol=1e-6, err_msg="%s seed %d" % (method, seed))
                if method != "mse":
                    np.testing.assert_allclose(np.array(resp.energy), et_energy, rtol=TOL, atol=TOL)
                    # the answer's energy, recomputed by PyTorch at emberd's y
                    again = m.energy_raw(torch.from_numpy(q), torch.from_numpy(ys[:, None, :])).numpy()[:, 0]
                    np.testing.assert_allclose(np.array(resp.energy), again, rtol=TOL, atol=TOL)
        # a new version from PyTorch hot-reloads and answers as PyTorch says
        m2 = et.train(x, y, method="dfo", seed=99, **SMALL)
        m2.options["infer.samples"] = 64
        et.save_ember(m2, os.path.join(repo, "dfo", "2.safetensors"))
        yt, _ = et.predict(m2, q, seed=5)

        def answer():
            code, resp, _ = call(srv.stub.Predict, it.pb.PredictRequest(
                model="dfo", x=q.reshape(-1).tolist(), options=it.pb.InferenceOptions(seed=5)))
            return resp if code == grpc.StatusCode.OK and resp.model_version == 2 else None
        resp = it.wait_until("version 2 served", answer)
        np.testing.assert_allclose(np.array(resp.y, dtype=np.float32).reshape(len(q), 2), yt, rtol=1e-6, atol=1e-6)
        srv.stop_clean(self)


class EmberToTorch(EmberTorch):
    def test_ember_checkpoints_load(self):
        x, y = rows_data(x_dim=2, y_dim=2)
        data = it.write_csv(os.path.join(self.tmp, "d.csv"), ["a", "b", "y:p", "y:q"],
                            np.concatenate([x, y], axis=1))
        q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], x[:7])
        runs = [("dfo", []), ("dfo", ["--arch", "mlp", "--depth", 3, "--spectral-norm"]),
                ("dfo", ["--spectral-norm"]), ("ardfo", []), ("langevin", ["--chain-steps", 3]),
                ("mse", [])]
        for k, (method, extra) in enumerate(runs):
            path = os.path.join(self.tmp, "%d-%s.safetensors" % (k, method))
            self.train(path, data, "--method", method, *extra, width=16, steps=4, batch=16, negatives=8,
                       samples=64)
            model = et.load_ember(path)
            self.assertEqual((model.method, model.x_names, model.y_names), (method, ["a", "b"], ["p", "q"]))
            self.check_energies(model, path, seed=k)
            # fit_stats: the normalisation and bounds ember fitted, to the bit
            fitted = et.fit_stats(x, y, method, 0.05)
            for key, v in model.stats().items():
                np.testing.assert_array_equal(fitted[key], v, err_msg="%s %s" % (method, key))
            if method == "mse":
                continue
            if method == "langevin":
                model.options["langevin.steps"] = 4
                extra_predict = ["--chain-steps", 4]
            else:
                extra_predict = []
            out = self.cli("predict", "--model", path, "--input", q, "--seed", 9, "--energy", *extra_predict)
            got = np.array([[float(v) for v in line.split(",")] for line in out.split()[1:]])
            yt, e = et.predict(model, x[:7], seed=9)
            # the CLI prints %.7g
            np.testing.assert_allclose(got[:, :2], yt, rtol=1e-6, atol=1e-6, err_msg=method)
            np.testing.assert_allclose(got[:, 2], e, rtol=1e-5, atol=1e-6, err_msg=method)


class Images(EmberTorch):
    """Image models (ember_torch.Encoder): both directions, answers equal to `ember predict` on
    the same images and seed, with and without extra observations, both heads."""

    def coords(self, n_train=40, n_test=12):
        train, test = (os.path.join(self.tmp, f) for f in ("train.npz", "test.npz"))
        self.cli("data", "coords", "--size", 12, "--train", n_train, "--test", n_test,
                 "--out-train", train, "--out-test", test)
        return np.load(train), np.load(test)

    def with_extras(self, name, d, seed):
        ex = (np.random.default_rng(seed).normal(size=(len(d["y"]), 2)) * 3 + 1).astype(np.float32)
        path = os.path.join(self.tmp, name)
        np.savez(path, x=d["x"], x_extra=ex, y=d["y"])
        return path, ex

    def check_predict(self, model, path, data, img, extra, seed):
        """`ember predict` on data (an .npz) equals ember_torch.predict on its images; energies
        and dE/dy of the network (tests/energies.c) at PyTorch's features equal PyTorch's."""
        energy = model.method != "mse"
        out = self.cli("predict", "--model", path, "--input", data, "--seed", seed, *(["--energy"] if energy else []))
        got = np.array([[float(v) for v in line.split(",")] for line in out.split()[1:]])
        yt, e = et.predict(model, img, extra=extra, seed=seed)
        what = "%s %s extra %d" % (model.method, model.encoder.head, model.encoder.extra)
        np.testing.assert_allclose(got[:, :2], yt, rtol=1e-6, atol=1e-6, err_msg=what)  # %.7g printed
        if energy:
            np.testing.assert_allclose(got[:, 2], e, rtol=1e-5, atol=1e-6, err_msg=what)
        with torch.no_grad():
            xn = model.norm_x(model.raw_x(img, extra)).numpy()
        yn = None if not energy else np.random.default_rng(seed).uniform(-1.5, 1.5, size=(len(xn), 2)).astype(np.float32)
        err = self.assert_close(self.energies_ember(path, xn, yn), self.energies_torch(model, xn, yn), what)
        print("     %s: predict equal, energies and dE/dy within %.1e (relative)" % (what, err))

    def test_ember_image_models_load(self):
        tr, te = self.coords()
        train_x, ex_tr = self.with_extras("trx.npz", tr, 1)
        test_x, ex_te = self.with_extras("tex.npz", te, 2)
        runs = [("dfo", "softargmax", False), ("dfo", "pool", True), ("langevin", "softargmax", True),
                ("mse", "pool", False)]
        for k, (method, head, extras) in enumerate(runs):
            path = os.path.join(self.tmp, "e%d.safetensors" % k)
            data = train_x if extras else os.path.join(self.tmp, "train.npz")
            more = ["--chain-steps", 3] if method == "langevin" else []
            # odd runs pad (PyTorch's Conv2d padding=), even runs do not
            conv = "4:5:2:2,6:3:1:1" if k % 2 else "4:5:2,6:3:1"
            self.train(path, data, "--method", method, "--conv", conv, "--head", head, *more,
                       width=16, steps=6, batch=8, negatives=8, samples=64)
            model = et.load_ember(path)
            self.assertEqual((model.encoder.image, model.encoder.head, model.encoder.extra),
                             ((12, 12, 3), head, 2 if extras else 0))
            self.assertEqual(model.encoder.spec()["encoder.conv"], conv)
            if method == "langevin":
                model.options["langevin.steps"] = 6
            # fit_stats: ember's normalisation (features as they are, extras normalised), to the bit
            fitted = et.fit_stats(ex_tr if extras else None, tr["y"], method, None, features=model.encoder.features)
            for key, v in model.stats().items():
                np.testing.assert_array_equal(fitted[key], v, err_msg="%s %s" % (method, key))
            self.check_predict(model, path, test_x if extras else os.path.join(self.tmp, "test.npz"),
                               te["x"], ex_te if extras else None, seed=k + 3)

    def test_torch_image_models_export(self):
        tr, te = self.coords()
        test_x, ex_te = self.with_extras("tex.npz", te, 2)
        ex_tr = (np.random.default_rng(5).normal(size=(len(tr["y"]), 2)) * 3 + 1).astype(np.float32)
        runs = [("dfo", "softargmax", False), ("dfo", "pool", True), ("langevin", "pool", False),
                ("mse", "softargmax", True)]
        for k, (method, head, extras) in enumerate(runs):
            m = et.train(tr["x"], tr["y"], method=method, seed=k, conv="4:5:2:2,6:3:1:1" if k % 2 else "4:5:2,6:3:1",
                         head=head, chain_steps=3,
                         extra=ex_tr if extras else None, **SMALL)
            m.options["infer.samples"] = 64
            if method == "langevin":
                m.options["langevin.steps"] = 6
            path = os.path.join(self.tmp, "t%d.safetensors" % k)
            et.save_ember(m, path)
            info = self.cli("info", "--model", path)
            self.assertIn("12x12x3", info)
            self.check_predict(m, path, test_x if extras else os.path.join(self.tmp, "test.npz"),
                               te["x"], ex_te if extras else None, seed=k + 7)
            back = et.load_ember(path)
            for (n1, a), (n2, b) in zip(sorted(m.state_dict().items()), sorted(back.state_dict().items())):
                self.assertEqual(n1, n2)
                self.assertTrue(torch.equal(a, b), n1)
        # what ember refuses is refused when the model is built
        with self.assertRaises(ValueError):
            et.EmberModel("ardfo", None, 2, image=(12, 12, 3))
        with self.assertRaises(ValueError) as cm:
            et.EmberModel("dfo", None, 2, image=(12, 12, 3), conv="4:13:1")
        self.assertIn("does not fit", str(cm.exception))
        with self.assertRaises(ValueError):
            et.EmberModel("dfo", None, 2, image=(12, 12, 3), conv="4:5")
        with self.assertRaises(ValueError) as cm:
            et.EmberModel("dfo", None, 2, image=(12, 12, 3), conv="4:5:2:5")
        self.assertIn("padding must be 0..kernel - 1 (4), got 5", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            et.predict(m, te["x"][:, :8])
        self.assertIn("(n, 12, 12, 3)", str(cm.exception))


class Pieces(it.EmberTest):
    """Finite-difference checks (torch.autograd.gradcheck, float64) of what ember_torch
    differentiates, and the safetensors reader's refusals."""

    def test_gradients(self):
        call_with = torch.nn.utils.stateless.functional_call
        torch.manual_seed(0)
        for arch, depth, sn in (("resnet", 2, False), ("mlp", 3, True), ("resnet", 4, True)):
            net = et.EnergyNet(3, 2, 6, depth, arch, spectral_norm=sn).double()
            net.blocks[0][0].power_iteration() if sn and arch == "resnet" else None
            x = torch.randn(2, 3, dtype=torch.float64)
            y = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
            self.assertTrue(torch.autograd.gradcheck(lambda yy: net(x, yy), (y,)))
            for name, p in net.named_parameters():  # weights, biases; sn: weight_orig through sigma
                f = lambda v, name=name: call_with(net, {name: v}, (x, y.detach()))
                self.assertTrue(torch.autograd.gradcheck(f, (p.detach().clone().requires_grad_(True),), fast_mode=True),
                                "%s %s" % (arch, name))
        # the Langevin loss (InfoNCE + gradient penalty: a double backward) and ardfo's corrected
        # InfoNCE, in every parameter, with the draws fixed by the generator's seed. The chains
        # are not differentiated (stop-gradient, as in ember), so the Langevin check runs them
        # for 0 steps: its counter-examples are then the uniform draws, whatever the weights.
        for method in ("langevin", "ardfo"):
            m = et.EmberModel(method, 2, 2, width=5, depth=2).double()
            o = et.recipe(method, negatives=3, chain_steps=0, penalty_margin=0.0)
            xn = torch.randn(3, 2, dtype=torch.float64)
            yn = torch.rand(3, 2, dtype=torch.float64) - 0.5

            class Loss(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.m = m

                def forward(self):
                    return ettrain.step_loss(self.m, xn, yn, o, torch.Generator().manual_seed(4))[0]
            wrap = Loss()
            for name, p in wrap.named_parameters():
                f = lambda v, name=name: call_with(wrap, {name: v}, ())
                self.assertTrue(torch.autograd.gradcheck(f, (p.detach().clone().requires_grad_(True),), fast_mode=True),
                                "%s %s" % (method, name))

    def test_encoder_gradients(self):
        """The encoder's features in every parameter and in float pixels, both heads."""
        call_with = torch.nn.utils.stateless.functional_call
        torch.manual_seed(1)
        for head, conv in (("softargmax", "3:3:2,2:2:1"), ("pool", "3:3:2,2:2:1"), ("softargmax", "3:3:2:1,2:2:1:1")):
            enc = et.Encoder((7, 6, 2), conv, head).double()
            img = torch.rand(2, 7, 6, 2, dtype=torch.float64)
            for name, p in enc.named_parameters():
                f = lambda v, name=name: call_with(enc, {name: v}, (img,))
                self.assertTrue(torch.autograd.gradcheck(f, (p.detach().clone().requires_grad_(True),)),
                                "%s %s" % (head, name))

    def test_constants_match_ember(self):
        """ember_torch's copies of ember's limits and defaults (it must import without ember's
        sources) equal the #defines in lib/include/ember."""
        from ember_torch import encoder as etenc, model as etmodel
        want = {"EMBER_MAX_X_DIM": etmodel.MAX_X_DIM, "EMBER_MAX_Y_DIM": etmodel.MAX_Y_DIM,
                "EMBER_MAX_ARDFO_Y_DIM": etmodel.MAX_ARDFO_Y_DIM, "EMBER_MAX_WIDTH": etmodel.MAX_WIDTH,
                "EMBER_MAX_DEPTH": etmodel.MAX_DEPTH, "EMBER_MAX_PARAMS": etmodel.MAX_PARAMS,
                "EMBER_MAX_CONV": etenc.MAX_CONV, "EMBER_MAX_IMAGE_SIDE": etenc.MAX_IMAGE_SIDE,
                "EMBER_MAX_IMAGE_CHANNELS": etenc.MAX_IMAGE_CHANNELS,
                "EMBER_MAX_CONV_CHANNELS": etenc.MAX_CONV_CHANNELS, "EMBER_MAX_KERNEL": etenc.MAX_KERNEL,
                "EMBER_MAX_EXTRA": etenc.MAX_EXTRA, "EMBER_ENCODER_DEFAULT_CONV": etenc.DEFAULT_CONV,
                "EMBER_BOUND_MARGIN": etmodel.BOUND_MARGIN, "EMBER_IMAGE_BOUND_MARGIN": etmodel.IMAGE_BOUND_MARGIN}
        got = {}
        inc = os.path.join(it.SOURCE, "lib", "include", "ember")
        for name in ("net.h", "model.h", "encoder.h", "train.h"):
            with open(os.path.join(inc, name)) as f:
                for line in f:
                    parts = line.split(None, 2)
                    if len(parts) == 3 and parts[0] == "#define" and parts[1] in want:
                        v = parts[2].split("/*")[0].strip()
                        if v.startswith('"'):
                            got[parts[1]] = v.strip('"')
                        else:  # C integer or float literal (0.05f)
                            got[parts[1]] = eval(v.replace("(size_t)", "").rstrip("f"))
        self.assertEqual(got, want)

    def test_recipes_match_ember(self):
        """ember_torch's copies of ember's per-method recipes (ettrain.recipe) and stored inference
        defaults (et.infer_defaults) equal the defaults `ember train --method M --help` states."""
        import re
        from ember_torch import model as etmodel
        for method in ("dfo", "ardfo", "langevin", "mse"):
            out = subprocess.run([it.EMBER, "train", "--method", method, "--help"], capture_output=True, text=True,
                                 check=True, timeout=it.CLI_TIMEOUT).stdout
            stated = {m.group(1).replace("-", "_"): m.group(2)
                      for m in re.finditer(r"^ +--([a-z-]+) [A-Z]+ .*\(default ([^)]*)\)$", out, re.M)}
            recipe, infer = ettrain.recipe(method), et.infer_defaults(method)
            images = ettrain.recipe(method, images=True)
            compared = 0
            for key, v in stated.items():
                if "; image data " in v and key != "bound_margin":  # "(default V; image data W)"
                    v, w = v.split("; image data ")
                    self.assertAlmostEqual(float(w), float(images[key]), places=6, msg=(method, key))
                    self.assertNotEqual(images[key], recipe[key], (method, key))
                    compared += 1
                elif key in images and key != "method":  # the same for image data
                    self.assertEqual(images[key], recipe[key], (method, key))
                if key == "bound_margin":  # "(default V; image data W, ...)": fit_stats's None
                    self.assertIsNone(recipe[key], method)
                    self.assertTrue(v.startswith("%g; image data %g," % (etmodel.BOUND_MARGIN, etmodel.IMAGE_BOUND_MARGIN)),
                                    (method, v))
                    compared += 1
                    continue
                if key in recipe and key != "method":
                    want = recipe[key]
                elif "infer." + key in infer:
                    want = infer["infer." + key]
                else:
                    continue
                compared += 1
                if isinstance(want, str):
                    self.assertEqual(v, want, (method, key))
                else:
                    self.assertAlmostEqual(float(v), float(want), places=6, msg=(method, key))
            self.assertGreaterEqual(compared, 20, method)
            if method == "langevin":  # inference chains: training's settings, twice as long
                for key in ("step_init", "step_final", "gamma", "noise_scale", "delta_max"):
                    self.assertAlmostEqual(infer["langevin." + key], recipe[key], places=6, msg=key)
                self.assertEqual(infer["langevin.steps"], 2 * recipe["chain_steps"])

    def test_safetensors_refusals(self):
        path = os.path.join(self.tmp, "m.safetensors")
        st.write(path, [("a", np.ones((2, 3), np.float32)), ("b", np.zeros(4, np.float32))], {"k": "v"})
        t, meta = st.read(path)
        self.assertEqual((t["a"].shape, t["b"].shape, meta), ((2, 3), (4,), {"k": "v"}))
        with open(path, "rb") as f:
            raw = f.read()
        for bad, needle in ((raw[:5], "shorter"), (raw[:-4], "offsets"), (raw + b"\0" * 4, "after the last"),
                            (raw.replace(b'"F32"', b'"F64"', 1), "only F32"),
                            (b"\xff" * 8 + raw[8:], "header length")):
            with open(path, "wb") as f:
                f.write(bad)
            with self.assertRaises(st.FormatError) as cm:
                st.read(path)
            self.assertIn(needle, str(cm.exception))
        with open(path, "wb") as f:
            f.write(raw)
        with self.assertRaises(st.FormatError) as cm:
            et.load_ember(path)
        self.assertIn("not an ember checkpoint", str(cm.exception))


if __name__ == "__main__":
    sys.exit(it.main())
