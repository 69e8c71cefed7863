"""Image models over gRPC (docs/images.md, Serving): Predict and Sample take the images as raw
uint8 bytes with their shape and the extras in x, and answer exactly what local `ember predict`
and `ember sample` answer on the same .npz with the same seed, in one request, split with
row_offset, or batched with other requests; GetModel and ListModels describe the encoder; every
malformed request is INVALID_ARGUMENT naming what the model takes, one over --max-message
RESOURCE_EXHAUSTED; `ember --server ... predict|sample|info` on an image .npz (or PNG files)
equals local.

The models are tiny (12x12x3 dots from `ember data coords`, two convolutions, a 16-wide
network, 10 training steps), trained once for every test: what is checked is the plumbing and
its bits, not accuracy."""
import os
import struct
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402

INVALID = grpc.StatusCode.INVALID_ARGUMENT
SIDE = 12
SMALL = ("--conv", "4:5:2,6:3:1", "--width", 16, "--steps", 10, "--batch", 16, "--negatives", 8)


def bits(values):
    """The float32 bit patterns of a response's floats: equality is bit for bit."""
    return struct.pack("<%df" % len(values), *values)


def shape(h=SIDE, w=SIDE, c=3):
    return it.pb.ImageShape(height=h, width=w, channels=c)


class Images(it.EmberTest):
    paths = None  # trained once: {name: checkpoint}, and the data files

    def setUp(self):
        super().setUp()
        d = it.SCRATCH
        if Images.paths is None:
            train, test = os.path.join(d, "train.npz"), os.path.join(d, "test.npz")
            self.cli("data", "coords", "--size", SIDE, "--train", 40, "--test", 20, "--seed", 1,
                     "--out-train", train, "--out-test", test)
            tr, te = np.load(train), np.load(test)
            # two extra observations per image, on a grid of binary fractions (exact in float32)
            rng = np.random.default_rng(4)
            ex_tr = (rng.integers(-64, 65, size=(len(tr["y"]), 2)) / 32.0).astype(np.float32)
            ex_te = (rng.integers(-64, 65, size=(len(te["y"]), 2)) / 32.0).astype(np.float32)
            train_x, test_x = os.path.join(d, "train_x.npz"), os.path.join(d, "test_x.npz")
            np.savez(train_x, x=tr["x"], x_extra=ex_tr, y=tr["y"])
            np.savez(test_x, x=te["x"], x_extra=ex_te, y=te["y"])
            vec = it.jump_data(os.path.join(d, "jump.csv"), n=100)
            Images.paths = {
                "dots": self.train(os.path.join(d, "dots.safetensors"), train, *SMALL, samples=128, seed=2),
                "extra": self.train(os.path.join(d, "extra.safetensors"), train_x, *SMALL, samples=128, seed=3),
                "jump": self.train(os.path.join(d, "jump.safetensors"), vec, width=8, steps=10, seed=4),
                "test": test, "test_x": test_x, "train": train,
            }
        p = Images.paths
        self.repo = os.path.join(self.tmp, "repo")
        for name in ("dots", "extra", "jump"):
            os.makedirs(os.path.join(self.repo, name))
            self.publish(p[name], os.path.join(self.repo, name, "1.safetensors"))
        self.test_npz, self.test_x_npz = p["test"], p["test_x"]
        t, tx = np.load(p["test"]), np.load(p["test_x"])
        self.img = t["x"]             # (20, 12, 12, 3) uint8
        self.extras = tx["x_extra"]   # (20, 2) float32
        self.assertEqual((self.img.dtype, self.img.shape), (np.uint8, (20, SIDE, SIDE, 3)))
        self.assertTrue((tx["x"] == self.img).all())

    def local(self, verb, name, data, *args):
        return self.cli(verb, "--model", Images.paths[name], "--input", data, *args)

    def predict_req(self, model="dots", lo=0, hi=20, seed=7, **kw):
        """A PredictRequest for test images lo..hi-1 (and their extras for the "extra" model)."""
        x = self.extras[lo:hi].ravel().tolist() if model == "extra" else []
        kw.setdefault("image_shape", shape())
        return it.pb.PredictRequest(model=model, images=self.img[lo:hi].tobytes(), x=x, rows=hi - lo,
                                    row_offset=lo, options=it.pb.InferenceOptions(seed=seed), **kw)

    def sample_req(self, model="dots", lo=0, hi=20, seed=4, modes=2):
        x = self.extras[lo:hi].ravel().tolist() if model == "extra" else []
        return it.pb.SampleRequest(model=model, images=self.img[lo:hi].tobytes(), image_shape=shape(), x=x,
                                   rows=hi - lo, row_offset=lo, modes=modes,
                                   options=it.pb.InferenceOptions(seed=seed))

    def test_predict_and_sample_equal_local(self):
        """One request, then the rows split over requests with row_offset: the answers equal
        local predict/sample on the same file and seed, and are the same bits either way."""
        srv = self.start("--models", self.repo)
        for model, data in (("dots", self.test_npz), ("extra", self.test_x_npz)):
            one = srv.stub.Predict(self.predict_req(model))
            self.assertEqual(it.format_predict(one, 2), self.local("predict", model, data, "--seed", 7, "--energy"))
            parts = [srv.stub.Predict(self.predict_req(model, lo, hi)) for lo, hi in ((0, 7), (7, 8), (8, 20))]
            self.assertEqual(bits(one.y), bits([v for r in parts for v in r.y]), model)
            self.assertEqual(bits(one.energy), bits([v for r in parts for v in r.energy]), model)
            # x_max_abs_z is measured on the encoded features and the extras
            self.assertEqual(len(one.x_max_abs_z), 20)
            whole = srv.stub.Sample(self.sample_req(model))
            self.assertEqual(it.format_sample(whole, 2), self.local("sample", model, data, "--seed", 4, "--modes", 2))
            tail = srv.stub.Sample(self.sample_req(model, 13, 20))
            self.assertEqual(list(tail.rows), list(whole.rows[13:]))
        srv.stop_clean(self)

    def test_concurrent_requests_share_batches(self):
        """One-image requests that pile up behind a busy worker run as one batch (the model's
        batch counters say so) and still answer what one request for every image answers."""
        srv = self.start("--models", self.repo, "--workers", 1, "--max-delay-us", 2000, "--max-batch", 64)
        whole = srv.stub.Predict(self.predict_req())
        whole_s = srv.stub.Sample(self.sample_req())
        before = srv.stub.GetModel(it.pb.GetModelRequest(model="dots")).stats
        busy = srv.stub.Predict.future(it.slow_request(srv.stub, "jump", [0.25, 0.5], seconds=1.0),
                                       timeout=it.RPC_TIMEOUT)
        # the slow request holds the one worker: wait until it runs, then queue the images
        it.wait_until("the slow request to run", lambda: srv.stub.GetModel(
            it.pb.GetModelRequest(model="jump")).stats.requests >= 2)
        preds = [srv.stub.Predict.future(self.predict_req(lo=i, hi=i + 1), timeout=it.RPC_TIMEOUT) for i in range(20)]
        samples = [srv.stub.Sample.future(self.sample_req(lo=i, hi=i + 1), timeout=it.RPC_TIMEOUT) for i in range(20)]
        busy.result()
        got = [f.result() for f in preds]
        got_s = [f.result() for f in samples]
        for i in range(20):
            self.assertEqual(bits(got[i].y), bits(whole.y[2 * i:2 * i + 2]), i)
            self.assertEqual(bits(got[i].energy), bits(whole.energy[i:i + 1]), i)
            self.assertEqual(got_s[i].rows[0], whole_s.rows[i], i)
        after = srv.stub.GetModel(it.pb.GetModelRequest(model="dots")).stats
        self.assertEqual(after.batched_requests - before.batched_requests, 40)
        self.assertLess(after.batches - before.batches, 40, "no request shared a batch")
        srv.stop_clean(self)

    def test_refusals(self):
        srv = self.start("--models", self.repo, "--max-rows", 16)
        P, S = srv.stub.Predict, srv.stub.Sample
        img = self.img[:2].tobytes()
        cases = [
            # a vector model given images, an image model given floats only
            (P, it.pb.PredictRequest(model="jump", x=[0.5, 0.5], images=img, image_shape=shape()),
             "takes vectors, not images", "x_dim 2"),
            (S, it.pb.SampleRequest(model="jump", x=[0.5, 0.5], image_shape=shape()), "takes vectors, not images"),
            (P, it.pb.PredictRequest(model="dots", x=[0.0] * 12), "takes 12x12x3 images", "x alone"),
            (S, it.pb.SampleRequest(model="extra", x=[0.0] * 14), "takes 12x12x3 images", "2 extra observations"),
            (P, it.pb.PredictRequest(model="dots", image_shape=shape()), "images is empty", "12x12x3"),
            # the shape: missing, another one with the same byte count, bytes that do not divide
            (P, it.pb.PredictRequest(model="dots", images=img), "image_shape is not set", "12x12x3"),
            (P, it.pb.PredictRequest(model="dots", images=img, image_shape=shape(12, 36, 1)),
             "image_shape is 12x36x1; the model takes 12x12x3 images"),
            (P, it.pb.PredictRequest(model="dots", images=img[:-1], image_shape=shape()),
             "not a whole number of 12x12x3 images"),
            (P, it.pb.PredictRequest(model="dots", images=img, image_shape=shape(), rows=3),
             "images has 864 bytes = 2 images of 12x12x3, request says rows 3"),
            # the extras: none for a model without, the wrong count, not finite, far out
            (P, it.pb.PredictRequest(model="dots", images=img, image_shape=shape(), x=[1.0, 2.0]),
             "x must be empty"),
            (P, it.pb.PredictRequest(model="extra", images=img, image_shape=shape(), x=[1.0, 2.0]),
             "x has 2 values; 2 images with the model's 2 extra observations each need 4"),
            (P, it.pb.PredictRequest(model="extra", images=img, image_shape=shape(), x=[1.0, 2.0, float("nan"), 0.0]),
             "x[1,0] (extra observation 0 of image 1) is NaN"),
            (S, it.pb.SampleRequest(model="extra", images=img, image_shape=shape(), x=[1.0, 2.0, 1e30, 0.0]),
             "x[1,0] (extra observation 0 of image 1)", "standard deviations"),
            # --max-rows counts images
            (P, it.pb.PredictRequest(model="dots", images=self.img[:17].tobytes(), image_shape=shape()),
             "images has 17 rows", "--max-rows"),
        ]
        for fn, req, *needles in cases:
            self.expect(fn, req, INVALID, *needles)
        # the server still answers
        self.assertEqual(len(P(self.predict_req(hi=16)).y), 32)
        srv.stop_clean(self)

    def infer_req(self, model="dots", lo=0, hi=20, seed=7, raw=True):
        """A v2 ModelInferRequest for test images lo..hi-1 (UINT8 [rows, H, W, C]) and, for the
        "extra" model, their extras (x, FP32 [rows, 2])."""
        req = it.kpb.ModelInferRequest(model_name=model)
        req.parameters["seed"].int64_param = seed
        img = req.inputs.add(name="images", datatype="UINT8", shape=[hi - lo, SIDE, SIDE, 3])
        tensors = [(img, self.img[lo:hi])]
        if model == "extra":
            tensors.append((req.inputs.add(name="x", datatype="FP32", shape=[hi - lo, 2]), self.extras[lo:hi]))
        for t, a in tensors:
            if raw:
                req.raw_input_contents.append(a.tobytes())
            elif a.dtype == np.uint8:
                t.contents.uint_contents.extend(a.ravel().tolist())
            else:
                t.contents.fp32_contents.extend(a.ravel().tolist())
        return req

    def test_kserve_infer_equals_predict(self):
        """ModelInfer on an image model (images UINT8, extras in x) answers Predict's bits, raw
        and typed; ModelMetadata describes those inputs; malformed image tensors are refused."""
        srv = self.start("--models", self.repo, "--max-rows", 16)
        k = it.kpbg.GRPCInferenceServiceStub(srv.channel)
        meta = {m: k.ModelMetadata(it.kpb.ModelMetadataRequest(name=m)) for m in ("dots", "extra")}
        self.assertEqual([(t.name, t.datatype, list(t.shape)) for t in meta["dots"].inputs],
                         [("images", "UINT8", [-1, SIDE, SIDE, 3])])
        self.assertEqual([(t.name, t.datatype, list(t.shape)) for t in meta["extra"].inputs],
                         [("images", "UINT8", [-1, SIDE, SIDE, 3]), ("x", "FP32", [-1, 2])])
        for model in ("dots", "extra"):
            want = srv.stub.Predict(self.predict_req(model, 0, 16))
            for raw in (True, False):
                got = k.ModelInfer(self.infer_req(model, 0, 16, raw=raw))
                out = {t.name: i for i, t in enumerate(got.outputs)}
                self.assertEqual([list(t.shape) for t in got.outputs], [[16, 2], [16]])
                if raw:
                    y, e = (got.raw_output_contents[out[n]] for n in ("y", "energy"))
                else:
                    y, e = (bits(got.outputs[out[n]].contents.fp32_contents) for n in ("y", "energy"))
                self.assertEqual(y, bits(want.y), (model, raw))
                self.assertEqual(e, bits(want.energy), (model, raw))
        # refusals: every one names what the model takes
        def req(model="dots", **change):
            r = self.infer_req(model, 0, 2)
            for key, v in change.items():
                v(r)
            return r
        cases = [
            (req(a=lambda r: setattr(r.inputs[0], "datatype", "FP32")), "images must be of datatype UINT8"),
            (req(a=lambda r: r.inputs[0].shape.__setitem__(1, 13)), "shape [rows, 12, 12, 3]", "[2, 13, 12, 3]"),
            (req(a=lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 10)), "has 10 bytes", "needs 864"),
            (req(a=lambda r: setattr(r.inputs[0], "name", "x")), "unknown input 'x'", "images (UINT8 [rows, 12, 12, 3])"),
            (req("extra", a=lambda r: r.inputs.pop()), "expected 2 input tensors",
             "images (UINT8 [rows, 12, 12, 3]) and x (FP32 [rows, extra])"),
            (req("extra", a=lambda r: r.inputs[1].shape.__setitem__(0, 3)), "input x must have shape [2, 2]"),
            (req("extra", a=lambda r: r.raw_input_contents.__setitem__(1, struct.pack("<4f", 0, 0, float("nan"), 0))),
             "x[1,0] (extra observation 0 of image 1) is NaN"),
            (req(a=lambda r: r.inputs[0].shape.__setitem__(0, 17)), "has 864 bytes", "needs 7344"),
        ]
        typed = self.infer_req("dots", 0, 2, raw=False)
        typed.inputs[0].contents.uint_contents[5] = 256
        cases.append((typed, "value 5 is 256", "0..255"))
        big = self.infer_req("dots", 0, 17)
        cases.append((big, "images has 17 rows", "--max-rows"))
        for r, *needles in cases:
            self.expect(k.ModelInfer, r, INVALID, *needles)
        self.assertEqual(len(srv.stub.Predict(self.predict_req(hi=2)).y), 4)  # still answering
        srv.stop_clean(self)

    def test_message_limit(self):
        """A request over --max-message is RESOURCE_EXHAUSTED; one under it is answered."""
        srv = self.start("--models", self.repo, "--max-message", 4096)
        # 9 images of 432 bytes ~ 3.9 KB with framing fits; 10 (4.3 KB) does not
        self.assertEqual(len(srv.stub.Predict(self.predict_req(hi=9)).y), 18)
        code, _, details = it.call(srv.stub.Predict, self.predict_req(hi=10))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        srv.stop_clean(self)

    def test_get_model_describes_the_encoder(self):
        srv = self.start("--models", self.repo)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="extra"))
        self.assertTrue(info.HasField("encoder"))
        e = info.encoder
        self.assertEqual((e.shape.height, e.shape.width, e.shape.channels), (SIDE, SIDE, 3))
        self.assertEqual((e.extra, e.conv, e.head, e.features), (2, "4:5:2,6:3:1", "softargmax", 12))
        self.assertEqual(info.x_dim, e.features + e.extra)
        listed = {m.name: m for m in srv.stub.ListModels(it.pb.ListModelsRequest()).models}
        self.assertEqual(listed["dots"].encoder.extra, 0)
        self.assertEqual(listed["dots"].encoder.shape.channels, 3)
        self.assertFalse(listed["jump"].HasField("encoder"))
        out = self.cli("--server", srv.target, "info", "--model", "extra")
        self.assertIn("encoder            12x12x3 images, conv 4:5:2,6:3:1, head softargmax: 12 features + 2 extra\n",
                      out)
        self.assertNotIn("encoder", self.cli("--server", srv.target, "info", "--model", "jump"))
        srv.stop_clean(self)

    def test_c_client(self):
        """libember_client's ember_client_predict_images and ember_client_sample_images (through
        tests/client_it.c) answer what local predict and sample answer; its model struct has
        the encoder."""
        client_it = os.environ.get("EMBER_CLIENT_IT")
        self.assertTrue(client_it, "EMBER_CLIENT_IT is not set (tests/CMakeLists.txt sets it)")
        srv = self.start("--models", self.repo)
        raw = os.path.join(self.tmp, "img.raw")
        with open(raw, "wb") as f:
            f.write(self.img.tobytes())
        ex = it.write_csv(os.path.join(self.tmp, "extras.csv"), ["e0", "e1"], self.extras.tolist())
        for model, data, extras in (("dots", self.test_npz, "-"), ("extra", self.test_x_npz, ex)):
            r = subprocess.run([client_it, srv.target, "images", model, "11", raw, extras, "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                  timeout=it.CLI_TIMEOUT)
            for mark in it.SANITIZER_MARKS:
                self.assertNotIn(mark, r.stderr)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("wrong_shape INVALID_ARGUMENT: image_shape is 12x36x1; the model takes 12x12x3 images",
                          r.stderr)
            local = self.local("predict", model, data, "--seed", 11, "--energy") + \
                self.local("sample", model, data, "--seed", 12, "--modes", 2)
            self.assertEqual(r.stdout, local, model)
        r = subprocess.run([client_it, srv.target, "info", "extra"], stdout=subprocess.PIPE,
                              universal_newlines=True, timeout=it.CLI_TIMEOUT)
        info = dict(line.split("=", 1) for line in r.stdout.splitlines())
        self.assertEqual((info["image"], info["image_extra"], info["image_features"], info["image_conv"],
                          info["image_head"]), ("12x12x3", "2", "12", "4:5:2,6:3:1", "softargmax"))
        srv.stop_clean(self)

    def test_python_client(self):
        """python/ember_client: predict(images=uint8 array, x=extras) and sample(images=...)
        answer what local predict and sample answer; info() has the encoder; a float array
        as images is refused before sending."""
        os.environ["EMBER_CLIENT_CACHE"] = os.path.join(it.SCRATCH, "client-cache")
        sys.path.insert(0, os.path.join(it.SOURCE, "python"))
        import ember_client
        srv = self.start("--models", self.repo)
        with ember_client.Client(srv.target) as c:
            for model, data, x in (("dots", self.test_npz, None), ("extra", self.test_x_npz, self.extras)):
                p = c.predict_full(x, model, images=self.img, seed=7)
                got = it.pb.PredictResponse(y=p.y.ravel().tolist(), energy=p.energy.tolist())
                self.assertEqual(it.format_predict(got, 2), self.local("predict", model, data, "--seed", 7, "--energy"))
                # one image (H, W, C) with its extras (k,): that row's answer at its row_offset
                one = c.predict_full(None if x is None else x[5], model, images=self.img[5], seed=7, row_offset=5)
                self.assertEqual(bits(one.y), bits(p.y[5]))
                modes = c.sample(x, model, images=self.img, seed=4, modes=2)
                want = self.local("sample", model, data, "--seed", 4, "--modes", 2).splitlines()[1:]
                lines = ["%d,%d,%s,%s,%s" % (i, r, it.f7(m.energy), "%.5g" % m.weight, ",".join(it.f7(v) for v in m.y))
                         for i, row in enumerate(modes) for r, m in enumerate(row)]
                self.assertEqual(lines, want, model)
            info = c.info("extra")
            self.assertEqual(info.encoder["shape"], {"height": SIDE, "width": SIDE, "channels": 3})
            self.assertEqual((info.encoder["extra"], info.encoder["head"]), (2, "softargmax"))
            self.assertIsNone(c.info("jump").encoder)
            with self.assertRaises(ember_client.InvalidInput) as e:
                c.predict(model="dots", images=self.img.astype(np.float32))
            self.assertIn("images must be uint8", str(e.exception))
            with self.assertRaises(ember_client.InvalidInput) as e:
                c.predict(self.extras[:3], "extra", images=self.img)
            self.assertIn("has 3 rows for 20 images", str(e.exception))
            with self.assertRaises(ember_client.EmberError) as e:
                c.predict(model="extra", images=self.img)
            self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("2 extra observations each need 40", str(e.exception))
        srv.stop_clean(self)

    def test_cli_remote_equals_local(self):
        """`ember --server ... predict|sample --input images.npz` sends the images as bytes (in
        one request, or split by --chunk-rows) and prints what local mode prints."""
        srv = self.start("--models", self.repo)
        for model, data in (("dots", self.test_npz), ("extra", self.test_x_npz)):
            local = self.local("predict", model, data, "--seed", 5, "--energy")
            for chunk in ("256", "6"):
                self.assertEqual(self.cli("--server", srv.target, "predict", "--model", model, "--input", data,
                                          "--seed", 5, "--energy", "--chunk-rows", chunk), local, (model, chunk))
            local = self.local("sample", model, data, "--seed", 3, "--modes", 3)
            self.assertEqual(self.cli("--server", srv.target, "sample", "--model", model, "--input", data,
                                      "--seed", 3, "--modes", 3, "--chunk-rows", 7), local, model)
        # the input against the model, with local mode's words
        rc, err = self.cli_fails("--server", srv.target, "predict", "--model", "extra", "--input", self.test_npz)
        self.assertIn("the model takes 2 extra observations (x_extra) per image; the data has 0", err)
        small = os.path.join(self.tmp, "small.npz")
        self.cli("data", "coords", "--size", 10, "--train", 3, "--out-train", small)
        rc, err = self.cli_fails("--server", srv.target, "predict", "--model", "dots", "--input", small)
        self.assertIn("the model takes 12x12x3 images; the data's are 10x10x3", err)
        csv = it.write_csv(os.path.join(self.tmp, "x.csv"), ["a", "b"], [[0.5, 0.5]])
        rc, err = self.cli_fails("--server", srv.target, "predict", "--model", "dots", "--input", csv)
        self.assertIn("the model takes 12x12x3 images (x as uint8 (n, 12, 12, 3))", err)
        # PNG files (one image each) as local mode reads them: the first three test images
        pngs = ",".join(write_png(os.path.join(self.tmp, "t%d.png" % i), self.img[i]) for i in range(3))
        local = self.local("predict", "dots", self.test_npz, "--seed", 5, "--energy").splitlines()[:4]
        self.assertEqual(self.cli("--server", srv.target, "predict", "--model", "dots", "--input", pngs, "--seed", 5,
                                  "--energy").splitlines(), local)
        rc, err = self.cli_fails("--server", srv.target, "predict", "--model", "extra", "--input", pngs)
        self.assertIn("the model takes 2 extra observations beside each image, which PNG cannot carry", err)
        rc, err = self.cli_fails("--server", srv.target, "predict", "--model", "jump", "--input", pngs)
        self.assertIn("PNG input is for image models", err)
        srv.stop_clean(self)


def write_png(path, img):
    """An 8-bit RGB PNG of img (h, w, 3) uint8, written with zlib (filter 0 on every row)."""
    import zlib
    h, w, _ = img.shape
    raw = b"".join(b"\0" + img[r].tobytes() for r in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


if __name__ == "__main__":
    sys.exit(it.main())
