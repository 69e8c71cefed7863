"""Bad requests: each gets its status and a message saying what was expected, and the server
keeps serving; plus the server-side limits (queue, message size, deadlines)."""
import math
import os
import shutil
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def predict(model="imp", x=(0.25, 0.5), **kw):
    opts = kw.pop("options", None)
    req = it.pb.PredictRequest(model=model, x=list(x), **kw)
    if opts is not None:
        req.options.CopyFrom(opts)
    return req


def sample(model="imp", x=(0.25, 0.5), **kw):
    return it.pb.SampleRequest(model=model, x=list(x), **kw)


class BadRequests(it.EmberTest):
    """One server with small limits; every bad request is answered and it keeps serving."""

    def setUp(self):
        super().setUp()
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.train(os.path.join(repo, "imp", "1.safetensors"), data, seed=1)
        self.train(os.path.join(repo, "exp", "1.safetensors"), data, "--method", "mse", seed=2)
        self.srv = self.start("--models", repo, "--workers", 1, "--max-rows", 4, "--max-samples", 1024,
                              "--max-message", 4096)
        self.P, self.S = self.srv.stub.Predict, self.srv.stub.Sample

    def assert_still_serving(self):
        code, resp, details = call(self.P, predict(x=[0.25, 0.5, -0.5, 0.75]))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(len(resp.y), 2)
        self.assertTrue(all(math.isfinite(v) for v in resp.y))

    def test_shape_and_values(self):
        self.expect(self.P, predict(x=[0.1, 0.2, 0.3]), INVALID, "3 values", "x_dim 2")
        self.expect(self.P, predict(x=[]), INVALID, "x is empty", "2 values")
        self.expect(self.P, predict(x=[0.1, 0.2, float("nan"), 0.4]), INVALID, "x[1,0]", "NaN")
        self.expect(self.P, predict(x=[float("inf"), 0.2]), INVALID, "x[0,0]", "infinite")
        self.expect(self.P, predict(x=[0.1, float("-inf")]), INVALID, "x[0,1]", "infinite")
        # finite but so far from the training data that the network would overflow to NaN
        self.expect(self.P, predict(x=[3e38, 0.2]), INVALID, "x[0,0]", "standard deviations")
        self.expect(self.S, sample(x=[0.1, -1e30]), INVALID, "x[0,1]", "standard deviations")
        self.expect(self.P, predict(x=[0.5] * 10), INVALID, "5 rows", "at most 4", "--max-rows")
        self.expect(self.S, sample(x=[0.5] * 3), INVALID, "x_dim 2")
        self.expect(self.S, sample(x=[float("nan"), 0.0]), INVALID, "NaN")
        self.expect(self.P, predict(model="exp", x=[0.5]), INVALID, "x_dim 2")  # explicit models too
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_model_and_version(self):
        self.expect(self.P, predict(model="nope"), grpc.StatusCode.NOT_FOUND, "'nope'", "exp", "imp")
        self.expect(self.S, sample(model="nope"), grpc.StatusCode.NOT_FOUND, "'nope'")
        self.expect(self.P, predict(model=""), INVALID, "model name")
        self.expect(self.P, predict(model="../imp"), INVALID, "model name", "[A-Za-z0-9_.-]")
        self.expect(self.P, predict(model="a" * 65), INVALID, "model name")
        self.expect(self.P, predict(version=7), grpc.StatusCode.NOT_FOUND, "version 7", "'imp'", "loaded: 1")
        self.expect(self.P, predict(version=-1), INVALID, "version", ">= 0")
        self.expect(self.srv.stub.GetModel, it.pb.GetModelRequest(model="nope"), grpc.StatusCode.NOT_FOUND, "'nope'")
        self.expect(self.srv.stub.GetModel, it.pb.GetModelRequest(model="imp", version=7),
                    grpc.StatusCode.NOT_FOUND, "version 7")
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_absurd_options(self):
        o = it.pb.InferenceOptions
        self.expect(self.P, predict(options=o(samples=10 ** 9)), INVALID, "1000000000", "1024", "--max-samples")
        self.expect(self.P, predict(options=o(samples=1025)), INVALID, "1025", "--max-samples")
        self.expect(self.P, predict(options=o(iterations=1001)), INVALID, "iterations", "1..1000")
        self.expect(self.P, predict(options=o(iterations=10 ** 9)), INVALID, "iterations", "1..1000")
        self.expect(self.P, predict(options=o(shrink=2.0)), INVALID, "shrink", "(0, 1]")
        self.expect(self.P, predict(options=o(shrink=-0.5)), INVALID, "shrink")
        self.expect(self.P, predict(options=o(sigma=-1.0)), INVALID, "sigma")
        self.expect(self.P, predict(options=o(sigma=float("nan"))), INVALID, "sigma")
        self.expect(self.P, predict(options=o(sigma=float("inf"))), INVALID, "sigma")
        self.expect(self.P, predict(options=o(temperature=-1e-3)), INVALID, "temperature")
        self.expect(self.P, predict(options=o(temperature=float("nan"))), INVALID, "temperature")
        self.expect(self.S, sample(modes=2000), INVALID, "modes", "1..1024")
        self.expect(self.S, sample(radius=-0.5), INVALID, "radius")
        self.expect(self.S, sample(radius=float("nan")), INVALID, "radius")
        self.expect(self.S, sample(min_mass=1.0), INVALID, "mass", "[0, 1)")
        self.expect(self.S, sample(polish_steps=20000), INVALID, "polish", "10000")
        self.expect(self.S, sample(options=o(samples=5000)), INVALID, "--max-samples")
        # limits in range are accepted: the most samples allowed, one iteration
        code, resp, details = call(self.P, predict(options=o(samples=1024, iterations=1)))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        # an explicit model ignores DFO options it does not use, but a bad one is still refused
        code, resp, details = call(self.P, predict(model="exp", options=o(samples=10 ** 6)))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_clamped_options_reported_as_sent(self):
        """Values beyond the server's internal clamps must be reported as the client sent them.

        rpc_ember.c clamps options.iterations to 100000, SampleRequest.modes to 1025 and
        polish_steps to 10001 before checking them, and the check's message then quotes the
        clamped number, which the client never sent."""
        o = it.pb.InferenceOptions
        self.expect(self.P, predict(options=o(iterations=10 ** 9)), INVALID, "1000000000")
        self.expect(self.S, sample(modes=10 ** 6), INVALID, "1000000")
        self.expect(self.S, sample(polish_steps=10 ** 6), INVALID, "1000000")
        self.srv.stop_clean(self)

    def test_sample_on_explicit_model(self):
        self.expect(self.S, sample(model="exp"), grpc.StatusCode.FAILED_PRECONDITION, "'exp'", "explicit", "Predict")
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_oversized_message(self):
        # 1500 floats ~ 6 KB against --max-message 4096
        self.expect(self.P, predict(x=[0.5] * 1500), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_not_a_protobuf(self):
        raw = self.srv.channel.unary_unary("/ember.v1.Ember/Predict")  # no serializers: bytes in and out
        # field 3 (x, packed floats) claims 16 bytes and has 3
        self.expect(raw, b"\x1a\x10abc", INVALID, "not a valid", "PredictRequest")
        self.expect(raw, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", INVALID, "not a valid")
        for method, name in (("Sample", "SampleRequest"), ("GetModel", "GetModelRequest"),
                             ("ListModels", "ListModelsRequest")):
            raw = self.srv.channel.unary_unary("/ember.v1.Ember/" + method)
            self.expect(raw, b"\x0a\x40ab", INVALID, "not a valid", name)
        # an empty message is a valid (all-default) request: the empty model name is refused
        raw = self.srv.channel.unary_unary("/ember.v1.Ember/Predict")
        self.expect(raw, b"", INVALID, "model name")
        health = self.srv.channel.unary_unary("/grpc.health.v1.Health/Check")
        self.expect(health, b"\x0a\x40ab", INVALID, "HealthCheckRequest")
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_unknown_method(self):
        for path in ("/ember.v1.Ember/Frobnicate", "/nope.v1.Nope/Predict", "/grpc.health.v1.Health/List"):
            raw = self.srv.channel.unary_unary(path)
            self.expect(raw, b"", grpc.StatusCode.UNIMPLEMENTED, path)
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_already_expired_deadline(self):
        code, _, details = call(self.P, predict(), timeout=0)
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, details)
        code, _, details = call(self.P, predict(), timeout=-1)
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, details)
        self.assert_still_serving()
        self.srv.stop_clean(self)

    def test_failure_counters(self):
        """GetModel's counters add up: requests = ok + failures, by status name."""
        self.expect(self.P, predict(x=[0.1]), INVALID)
        self.expect(self.P, predict(version=9), grpc.StatusCode.NOT_FOUND)
        self.expect(self.S, sample(model="exp"), grpc.StatusCode.FAILED_PRECONDITION)
        self.expect(self.S, sample(radius=-1.0), INVALID)
        self.expect(self.P, predict(options=it.pb.InferenceOptions(shrink=3.0)), INVALID)
        for _ in range(3):
            self.assert_still_serving()
        imp = self.srv.stub.GetModel(it.pb.GetModelRequest(model="imp"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual(imp.requests, 7)
        self.assertEqual(imp.ok, 3)
        self.assertEqual(dict(imp.failures), {"INVALID_ARGUMENT": 3, "NOT_FOUND": 1})
        exp = self.srv.stub.GetModel(it.pb.GetModelRequest(model="exp"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual(exp.requests, 1)
        self.assertEqual(exp.ok, 0)
        self.assertEqual(dict(exp.failures), {"FAILED_PRECONDITION": 1})
        self.srv.stop_clean(self)


class ServerLimits(it.EmberTest):
    """One worker and a one-request queue, and a slow request to keep the worker busy."""

    def setUp(self):
        super().setUp()
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.train(os.path.join(repo, "imp", "1.safetensors"), data, seed=1, width=64)
        self.srv = self.start("--models", repo, "--workers", 1, "--max-queue", 1, "--max-delay-us", 0)
        self.P = self.srv.stub.Predict
        # 4 rows that keep the only worker busy for about 1.5 s
        self.slow = it.slow_request(self.srv.stub, "imp", [0.25, 0.5] * 4)
        self.base = self.stats()  # counters before the test (the calibration counts)

    def stats(self):
        return self.srv.stub.GetModel(it.pb.GetModelRequest(model="imp"), timeout=it.RPC_TIMEOUT).stats

    def slow_future(self, timeout=120):
        f = self.P.future(self.slow, timeout=timeout)
        time.sleep(0.3)  # let it reach the worker
        self.assertFalse(f.done(), "the slow request was not slow (%s)" % (f.code() if f.done() else ""))
        return f

    def test_full_queue(self):
        slow = self.slow_future()
        futures = [self.P.future(predict(options=it.pb.InferenceOptions(seed=i)), timeout=120) for i in range(16)]
        codes = []
        for f in futures:
            try:
                f.result(timeout=150)
                codes.append((grpc.StatusCode.OK, ""))
            except grpc.RpcError as e:
                codes.append((e.code(), e.details()))
        self.assertEqual(slow.code(), grpc.StatusCode.OK, slow.details())
        exhausted = [d for c, d in codes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
        ok = [c for c, d in codes if c == grpc.StatusCode.OK]
        self.assertEqual(len(exhausted) + len(ok), len(codes), codes)
        self.assertGreaterEqual(len(exhausted), 1, codes)
        self.assertGreaterEqual(len(ok), 1, "the queued request must be answered: %s" % codes)
        for d in exhausted:
            self.assertIn("queue is full", d)
        st = self.stats()
        self.assertEqual(st.requests - self.base.requests, 17)
        self.assertEqual(st.ok - self.base.ok, 1 + len(ok))
        self.assertEqual(dict(st.failures), {"RESOURCE_EXHAUSTED": len(exhausted)})
        self.assert_serving()
        self.srv.stop_clean(self)

    def assert_serving(self):
        code, resp, details = call(self.P, predict())
        self.assertEqual(code, grpc.StatusCode.OK, details)

    def test_deadline_passes_in_queue(self):
        slow = self.slow_future()
        # queued behind the slow request with a deadline it cannot meet
        code, _, details = call(self.P, predict(), timeout=0.2)
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, details)
        self.assertEqual(slow.result(timeout=150).model_version, 1)
        # the server drops the expired call before computing it and counts it
        st = it.wait_until("the expired call counted",
                           lambda: (lambda s: s if s.failures.get("DEADLINE_EXCEEDED") else None)(self.stats()),
                           timeout=10)
        self.assertEqual(dict(st.failures), {"DEADLINE_EXCEEDED": 1})
        self.assertEqual(st.ok - self.base.ok, 1)
        self.assertEqual(st.batched_requests - self.base.batched_requests, 1,
                         "the expired request must not be computed")
        self.assert_serving()
        self.srv.stop_clean(self)

    def test_client_gives_up_while_computing(self):
        # the client's deadline passes while its request runs: the server stops the batch at
        # its next iteration (it does not finish it), counts the call DEADLINE_EXCEEDED, and
        # goes on serving (no crash, no leak at exit)
        code, _, details = call(self.P, self.slow, timeout=0.3)
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED, details)
        st = it.wait_until("the abandoned batch stopped",
                           lambda: (lambda s: s if s.failures.get("DEADLINE_EXCEEDED") else None)(self.stats()),
                           timeout=30)
        self.assertEqual(st.batches, self.base.batches, "an abandoned batch is stopped, not completed")
        self.assert_serving()
        # and a client that cancels outright
        f = self.P.future(self.slow, timeout=60)
        time.sleep(0.2)
        f.cancel()
        self.assertTrue(f.cancelled())
        self.assert_serving()
        self.srv.stop_clean(self)

    def test_response_larger_than_max_message(self):
        """A response over --max-message fails with RESOURCE_EXHAUSTED (and the server lives)."""
        big = os.path.join(self.tmp, "big.safetensors")
        shutil.copyfile(os.path.join(self.tmp, "repo", "imp", "1.safetensors"), big)
        srv = self.start("--model", big, "--max-message", 1024, "--max-rows", 1024)
        # 200 rows x 2 floats of x is ~1.6 KB: refused on the way in
        code, _, details = call(srv.stub.Predict, predict(model="big", x=[0.5] * 400))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        # 70 rows in (~560 bytes), 70 y, 70 energies and 70 x_max_abs_z out (~850 bytes with
        # framing): fits
        code, resp, details = call(srv.stub.Predict, predict(model="big", x=[0.5] * 140))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        # Sample: 120 rows in (960 bytes), up to 120 x 8 modes out (several KB): too large
        req = sample(model="big", x=[0.25] * 240, modes=8, radius=0.01, min_mass=-1.0)
        code, _, details = call(srv.stub.Sample, req)
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        code, resp, details = call(srv.stub.Predict, predict(model="big"))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        srv.stop_clean(self)
        self.srv.stop_clean(self)


def read_checkpoint(path):
    """(header dict, data bytes) of a safetensors file."""
    import json
    import struct
    with open(path, "rb") as f:
        buf = f.read()
    (hlen,) = struct.unpack("<Q", buf[:8])
    return json.loads(buf[8:8 + hlen].decode()), bytearray(buf[8 + hlen:])


def write_checkpoint(path, header, data):
    import json
    import struct
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


class NonFiniteAnswers(it.EmberTest):
    """A model whose arithmetic overflows float32 is never answered OK: absurd statistics and
    weights that overflow at the data's centre are refused at load, and a model that overflows
    only away from its centre fails the call (INTERNAL) instead of answering NaN or Inf."""

    def overflowing(self, src, dst):
        """src's network rewritten: the input projection's x columns 1e30, the hidden weights
        1e20, the output weights 1, everything else 0. E(x = x_mean) = 0, E(x_mean + x_std) = inf."""
        import struct
        header, data = read_checkpoint(src)
        meta = header["__metadata__"]
        x_dim, y_dim = int(meta["x_dim"]), int(meta["y_dim"])
        for name, t in header.items():
            if name == "__metadata__":
                continue
            b, e = t["data_offsets"]
            rows, cols = (t["shape"] + [1])[:2]
            for i in range((e - b) // 4):
                v = 0.0
                if name == "proj.weight" and i % cols < x_dim:
                    v = 1e30
                elif name.startswith("blocks.") and name.endswith(".weight"):
                    v = 1e20
                elif name == "out.weight":
                    v = 1.0
                data[b + 4 * i:b + 4 * i + 4] = struct.pack("<f", v)
        write_checkpoint(dst, header, data)
        self.assertEqual(y_dim, 1)
        return [float(v) for v in meta["x_mean"].strip("[]").split(",")], \
            [float(v) for v in meta["x_std"].strip("[]").split(",")]

    def test_never_ok_with_nan(self):
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        good = self.train(os.path.join(self.tmp, "good.safetensors"), data, width=8, steps=5)
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(os.path.join(repo, "over"))
        mean, std = self.overflowing(good, os.path.join(repo, "over", "1.safetensors"))
        srv = self.start("--models", repo, "--workers", 1, "--poll-ms", 100)
        it.wait_until("over loaded", lambda: it.call(srv.stub.GetModel, it.pb.GetModelRequest(model="over"))[1])

        centre, away = list(mean), [mean[0] + std[0], mean[1]]
        opts = it.pb.InferenceOptions(samples=64, seed=1)
        code, resp, details = call(srv.stub.Predict, predict(model="over", x=centre, options=opts))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertTrue(all(math.isfinite(v) for v in list(resp.y) + list(resp.energy)))
        self.expect(srv.stub.Predict, predict(model="over", x=away, options=opts), grpc.StatusCode.INTERNAL,
                    "not finite")
        self.expect(srv.stub.Predict, predict(model="over", x=centre + away, options=opts),
                    grpc.StatusCode.INTERNAL, "not finite")
        req = sample(model="over", x=away, options=opts)
        self.expect(srv.stub.Sample, req, grpc.StatusCode.INTERNAL, "not finite")
        req.return_samples = True
        self.expect(srv.stub.Sample, req, grpc.StatusCode.INTERNAL, "not finite")
        # and locally: no NaN printed, a message and a failure
        q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"], [away])
        model = os.path.join(repo, "over", "1.safetensors")
        rc, err = self.cli_fails("predict", "--model", model, "--input", q, "--samples", 64)
        self.assertIn("not finite", err)
        rc, err = self.cli_fails("sample", "--model", model, "--input", q, "--samples", 64, "--modes", 2)
        self.assertIn("not finite", err)

        # version 2: finite but absurd statistics (y_std 3e38): refused at load, 1 still served
        header, blob = read_checkpoint(good)
        header["__metadata__"]["y_std"] = "[3e38]"
        v2 = os.path.join(self.tmp, "absurd.safetensors")
        write_checkpoint(v2, header, blob)
        self.publish(v2, os.path.join(repo, "over", "2.safetensors"))
        info = it.wait_until("version 2 seen", lambda: [
            i for i in [it.call(srv.stub.GetModel, it.pb.GetModelRequest(model="over"))[1]]
            if i and (i.load_errors or 2 in i.versions)])[0]
        self.assertEqual(info.version, 1)
        self.assertEqual([e.version for e in info.load_errors], [2])
        self.assertIn("overflows float32", info.load_errors[0].message)
        rc, err = self.cli_fails("predict", "--model", v2, "--input", q)
        self.assertIn("overflows float32", err)
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
