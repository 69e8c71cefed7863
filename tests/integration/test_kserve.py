"""The Open Inference Protocol v2 (inference.GRPCInferenceService) on emberd, through stubs that
grpc_tools generates from proto/inference/v2/grpc_service.proto (ember_it.kpb, kpbg): liveness,
readiness and metadata; ModelInfer with raw and typed contents equal to Predict's answers for
the same seed and options (and sharing Predict's batches); versions as v2 version strings;
errors as gRPC statuses; reflection listing the service; auth as for Predict."""
import os
import random
import struct
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def param(v):
    """An InferParameter holding v (bool, int, float or str)."""
    p = it.kpb.InferParameter()
    if isinstance(v, bool):
        p.bool_param = v
    elif isinstance(v, int):
        p.int64_param = v
    elif isinstance(v, float):
        p.double_param = v
    else:
        p.string_param = v
    return p


def infer_request(model, rows, raw=True, version="", params=None, outputs=None, shape=None,
                  datatype="FP32", name="x", req_id=""):
    req = it.kpb.ModelInferRequest(model_name=model, model_version=version, id=req_id)
    flat = [v for r in rows for v in r]
    t = req.inputs.add(name=name, datatype=datatype)
    t.shape.extend(shape if shape is not None else [len(rows), len(rows[0]) if rows else 0])
    if raw:
        req.raw_input_contents.append(struct.pack("<%df" % len(flat), *flat))
    else:
        t.contents.fp32_contents.extend(flat)
    for k, v in (params or {}).items():
        req.parameters[k].CopyFrom(param(v))
    for o in outputs or ():
        req.outputs.add(name=o)
    return req


def outputs_of(resp):
    """{name: (shape, values)} of a ModelInferResponse, raw or typed."""
    out = {}
    for i, t in enumerate(resp.outputs):
        if resp.raw_output_contents:
            b = resp.raw_output_contents[i]
            vals = list(struct.unpack("<%df" % (len(b) // 4), b))
        else:
            vals = list(t.contents.fp32_contents)
        assert t.datatype == "FP32", t.datatype
        out[t.name] = (list(t.shape), vals)
    return out


class KServe(it.EmberTest):
    @classmethod
    def setUpClass(cls):
        # one repository for every test (training is most of a test's time; servers only read it)
        cls.repo = os.path.join(it.SCRATCH, "repo")
        data = it.jump_data(os.path.join(it.SCRATCH, "jump.csv"))
        two = it.two_out_data(os.path.join(it.SCRATCH, "two.csv"))
        for name, version, src, seed, extra in (("jump", 1, data, 3, ()), ("jump", 2, data, 4, ()),
                                                ("two", 1, two, 5, ("--y-dim", "2")),
                                                ("flat", 1, data, 6, ("--method", "mse"))):
            out = os.path.join(cls.repo, name, "%d.safetensors" % version)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            subprocess.run([it.EMBER, "train", "--data", src, "--out", out, "--width", "32", "--steps", "80",
                            "--batch", "32", "--negatives", "16", "--seed", str(seed), "--samples", "256",
                            "--threads", "1", "--quiet"] + list(extra), check=True, timeout=it.CLI_TIMEOUT)

    def setUp(self):
        super().setUp()
        rng = random.Random(5)
        self.x2 = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(6)]
        self.x1 = [[it.grid_value(rng)] for _ in range(4)]

    def serve(self, *args):
        self.srv = self.start("--models", self.repo, "--workers", 2, *args)
        self.v2 = it.kpbg.GRPCInferenceServiceStub(self.srv.channel)
        return self.srv

    def predict(self, model, rows, version=0, **opts):
        req = it.pb.PredictRequest(model=model, version=version, x=[v for r in rows for v in r],
                                   options=it.pb.InferenceOptions(**opts))
        code, resp, details = call(self.srv.stub.Predict, req)
        self.assertEqual(code, OK, details)
        return resp

    def infer(self, req):
        code, resp, details = call(self.v2.ModelInfer, req)
        self.assertEqual(code, OK, details)
        return resp

    def test_server_and_model_metadata(self):
        self.serve()
        self.assertTrue(call(self.v2.ServerLive, it.kpb.ServerLiveRequest())[1].live)
        self.assertTrue(call(self.v2.ServerReady, it.kpb.ServerReadyRequest())[1].ready)
        meta = call(self.v2.ServerMetadata, it.kpb.ServerMetadataRequest())[1]
        self.assertEqual(meta.name, "emberd")
        self.assertRegex(meta.version, r"^\d+\.\d+\.\d+$")
        self.assertEqual(list(meta.extensions), [])
        # a model: its versions as strings, x in, y and energy out, rows of any number
        code, m, details = call(self.v2.ModelMetadata, it.kpb.ModelMetadataRequest(name="two"))
        self.assertEqual(code, OK, details)
        self.assertEqual((m.name, list(m.versions), m.platform), ("two", ["1"], "ember"))
        self.assertEqual([(t.name, t.datatype, list(t.shape)) for t in m.inputs], [("x", "FP32", [-1, 1])])
        self.assertEqual([(t.name, t.datatype, list(t.shape)) for t in m.outputs],
                         [("y", "FP32", [-1, 2]), ("energy", "FP32", [-1])])
        m = call(self.v2.ModelMetadata, it.kpb.ModelMetadataRequest(name="jump", version="1"))[1]
        self.assertEqual(list(m.versions), ["1", "2"])
        self.assertEqual(list(m.inputs[0].shape), [-1, 2])
        # readiness per model and version; unknown ones are not ready (an answer, not an error)
        for name, version, ready in (("jump", "", True), ("jump", "2", True), ("jump", "1", True),
                                     ("jump", "3", False), ("nosuch", "", False), ("flat", "", True)):
            code, r, details = call(self.v2.ModelReady, it.kpb.ModelReadyRequest(name=name, version=version))
            self.assertEqual(code, OK, details)
            self.assertEqual(r.ready, ready, "%s %r" % (name, version))
        self.expect(self.v2.ModelReady, it.kpb.ModelReadyRequest(name="jump", version="v1"), INVALID,
                    "positive integer")
        self.expect(self.v2.ModelMetadata, it.kpb.ModelMetadataRequest(name="nosuch"), NOT_FOUND, "nosuch")
        self.expect(self.v2.ModelMetadata, it.kpb.ModelMetadataRequest(name="jump", version="7"), NOT_FOUND,
                    "version 7")
        self.srv.stop_clean(self)

    def test_infer_equals_predict(self):
        self.serve()
        for model, rows, ydim, version in (("jump", self.x2, 1, "2"), ("two", self.x1, 2, "1")):
            for seed in (0, 9, 2 ** 40 + 3):
                want = self.predict(model, rows, seed=seed)
                for raw in (True, False):
                    resp = self.infer(infer_request(model, rows, raw=raw, params={"seed": seed}, req_id="r%d" % seed))
                    self.assertEqual((resp.model_name, resp.model_version, resp.id), (model, version, "r%d" % seed))
                    self.assertEqual(bool(resp.raw_output_contents), raw, "answered as asked")
                    out = outputs_of(resp)
                    self.assertEqual(out["y"], ([len(rows), ydim], list(want.y)))
                    self.assertEqual(out["energy"], ([len(rows)], list(want.energy)))
        # options as parameters (uint64 for the seed too), and versions as strings
        want = self.predict("jump", self.x2, version=1, seed=4, samples=96, iterations=4, temperature=0.5)
        req = infer_request("jump", self.x2, version="1",
                            params={"samples": 96, "iterations": 4, "temperature": 0.5})
        req.parameters["seed"].uint64_param = 4
        out = outputs_of(self.infer(req))
        self.assertEqual(out["y"][1], list(want.y))
        latest = self.infer(infer_request("jump", self.x2, params={"seed": 4}))
        self.assertEqual(latest.model_version, "2")
        self.assertEqual(outputs_of(latest)["y"][1], list(self.predict("jump", self.x2, seed=4).y))
        # the chosen optimiser as a parameter
        want = self.predict("jump", self.x2, seed=2, samples=32,
                            optimizer=it.pb.InferenceOptions.OPTIMIZER_LANGEVIN)
        out = outputs_of(self.infer(infer_request("jump", self.x2, params={"seed": 2, "samples": 32,
                                                                           "optimizer": "langevin"})))
        self.assertEqual(out["y"][1], list(want.y))
        # outputs asked for by name; an explicit model's energy is 0
        resp = self.infer(infer_request("two", self.x1, outputs=["energy"]))
        self.assertEqual([t.name for t in resp.outputs], ["energy"])
        self.assertEqual(len(resp.raw_output_contents), 1)
        out = outputs_of(self.infer(infer_request("flat", self.x2, raw=False)))
        self.assertEqual(out["y"][1], list(self.predict("flat", self.x2).y))
        self.assertEqual(out["energy"][1], [0.0] * len(self.x2))
        self.srv.stop_clean(self)

    def test_infer_shares_predict_batches(self):
        # one worker, a long delay: concurrent Predicts and ModelInfers with the same options
        # queue together, and each still gets its own answer
        self.serve("--workers", 1, "--max-delay-us", 200000, "--max-batch", 64)
        results = {}

        def one(i):
            rows = self.x2[i % 6:i % 6 + 1]
            if i % 2:
                results[i] = list(self.predict("jump", rows, seed=i).y)
            else:
                results[i] = outputs_of(self.infer(infer_request("jump", rows, params={"seed": i})))["y"][1]
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(it.RPC_TIMEOUT)
        for i in range(8):
            self.assertEqual(results[i], list(self.predict("jump", self.x2[i % 6:i % 6 + 1], seed=i).y))
        stats = call(self.srv.stub.GetModel, it.pb.GetModelRequest(model="jump"))[1].stats
        self.assertLess(stats.batches, stats.batched_requests, "some batch answered several requests")
        self.srv.stop_clean(self)

    def test_errors(self):
        self.serve()
        bad = (
            (infer_request("nosuch", self.x2), NOT_FOUND, ("nosuch",)),
            (infer_request("jump", self.x2, version="5"), NOT_FOUND, ("version 5",)),
            (infer_request("jump", self.x2, version="x1"), INVALID, ("positive integer",)),
            (infer_request("jump", self.x2, datatype="FP64"), INVALID, ("FP32", "FP64")),
            (infer_request("jump", self.x2, name="input0"), INVALID, ("input0",)),
            (infer_request("jump", self.x2, shape=[6, 3]), INVALID, ("[rows, 2]", "[6, 3]")),
            (infer_request("jump", self.x2, shape=[12]), INVALID, ("[rows, 2]",)),
            (infer_request("jump", self.x2, shape=[4, 2]), INVALID, ("48 bytes", "32")),
            (infer_request("jump", self.x2, shape=[4, 2], raw=False), INVALID, ("12 values", "needs 8")),
            (infer_request("jump", self.x2, params={"samples": 0}), INVALID, ("samples",)),
            (infer_request("jump", self.x2, params={"samples": "many"}), INVALID, ("samples", "integer")),
            (infer_request("jump", self.x2, params={"seed": -1}), INVALID, ("seed",)),
            (infer_request("jump", self.x2, params={"temperature": -1.0}), INVALID, ("temperature",)),
            (infer_request("jump", self.x2, params={"priority": 1}), INVALID, ("unknown parameter 'priority'",)),
            (infer_request("jump", self.x2, params={"optimizer": "sgd"}), INVALID, ("optimizer",)),
            (infer_request("jump", self.x2, params={"optimizer": "ardfo"}), INVALID, ("ardfo", "prefix nets")),
            (infer_request("flat", self.x2, params={"optimizer": "dfo"}), INVALID, ("no energy",)),
            (infer_request("jump", self.x2, params={"samples": 1 << 30}), INVALID, ("--max-samples",)),
            (infer_request("jump", self.x2, outputs=["z"]), INVALID, ("unknown output 'z'",)),
            (infer_request("jump", [[float("nan"), 0.0]]), INVALID, ("x[0,0]",)),
        )
        for req, code, needles in bad:
            self.expect(self.v2.ModelInfer, req, code, *needles)
        both = infer_request("jump", self.x2)
        both.inputs[0].contents.fp32_contents.extend([0.0] * 12)
        self.expect(self.v2.ModelInfer, both, INVALID, "both")
        none = infer_request("jump", self.x2, raw=False)
        none.inputs[0].contents.Clear()
        self.expect(self.v2.ModelInfer, none, INVALID, "no data")
        two = infer_request("jump", self.x2)
        two.inputs.add(name="x", datatype="FP32", shape=[1, 2])
        self.expect(self.v2.ModelInfer, two, INVALID, "repeated input 'x'", "x (FP32 [rows, 2])")
        one_of_two = infer_request("jump", self.x2)
        one_of_two.raw_input_contents.append(b"")
        self.expect(self.v2.ModelInfer, one_of_two, INVALID, "raw_input_contents has 2 entries for 1 input")
        self.expect(self.v2.ModelInfer, it.kpb.ModelInferRequest(model_name="jump"), INVALID,
                    "expected 1 input tensor, x (FP32 [rows, 2]); got 0")
        # a method of the protocol's extensions that emberd does not serve
        unimpl = self.srv.channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex")
        code, _, _ = call(unimpl, b"")
        self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED)
        # the failures counted as the model's requests, as Predict's are
        stats = call(self.srv.stub.GetModel, it.pb.GetModelRequest(model="jump"))[1].stats
        self.assertGreaterEqual(stats.failures["INVALID_ARGUMENT"], 15)
        self.srv.stop_clean(self)

    def test_reflection_lists_the_service(self):
        self.serve()
        rstub = it.rpbg.ServerReflectionStub(self.srv.channel)
        R = it.rpb.ServerReflectionRequest
        resps = list(rstub.ServerReflectionInfo(iter([
            R(list_services=""), R(file_containing_symbol="inference.GRPCInferenceService.ModelInfer")]),
            timeout=it.RPC_TIMEOUT))
        self.assertIn("inference.GRPCInferenceService", [s.name for s in resps[0].list_services_response.service])
        from google.protobuf import descriptor_pb2
        (raw,) = resps[1].file_descriptor_response.file_descriptor_proto
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        self.assertEqual((fd.name, fd.package), ("inference/v2/grpc_service.proto", "inference"))
        self.assertEqual([m.name for m in fd.service[0].method],
                         ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"])
        # health knows the service too
        code, h, _ = call(self.srv.health.Check, it.hpb.HealthCheckRequest(service="inference.GRPCInferenceService"))
        self.assertEqual(code, OK)
        self.assertEqual(h.status, it.hpb.HealthCheckResponse.SERVING)
        self.srv.stop_clean(self)

    def test_auth(self):
        tokens = os.path.join(self.tmp, "tokens")
        with open(tokens, "w") as f:
            f.write("robot-token-0123456789\n")
        os.chmod(tokens, 0o600)
        self.serve("--token-file", tokens)
        # the probes are open, as health is; everything else needs a token
        self.assertTrue(call(self.v2.ServerLive, it.kpb.ServerLiveRequest())[1].live)
        self.assertTrue(call(self.v2.ServerReady, it.kpb.ServerReadyRequest())[1].ready)
        req = infer_request("jump", self.x2)
        self.expect(self.v2.ModelInfer, req, grpc.StatusCode.UNAUTHENTICATED)
        self.expect(self.v2.ModelMetadata, it.kpb.ModelMetadataRequest(name="jump"), grpc.StatusCode.UNAUTHENTICATED)
        code, resp, details = call(lambda r, timeout: self.v2.ModelInfer(
            r, timeout=timeout, metadata=(("authorization", "Bearer robot-token-0123456789"),)), req)
        self.assertEqual(code, OK, details)
        self.srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
