"""Server reflection (grpc.reflection.v1 and v1alpha): services listed, descriptors served and
equal to the ones compiled from proto/, errors per request, streams that end at shutdown."""
import os
import queue
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


def without_json_names(fd):
    """A copy of a FileDescriptorProto without json_name (protoc writes it into the Python
    module's descriptor but not into a --descriptor_set_out file; it is derived anyway)."""
    fd = descriptor_pb2.FileDescriptorProto.FromString(fd.SerializeToString())

    def strip(msgs):
        for m in msgs:
            for f in m.field:
                f.ClearField("json_name")
            strip(m.nested_type)
    strip(fd.message_type)
    return fd


class Requests:
    """A request iterator for a client stream that stays open until close()."""

    def __init__(self):
        self.q = queue.Queue()

    def put(self, m):
        self.q.put(m)

    def close(self):
        self.q.put(None)

    def __iter__(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m


class Reflection(it.EmberTest):
    def setUp(self):
        super().setUp()
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.train(os.path.join(repo, "m", "1.safetensors"), data, width=16)
        self.srv = self.start("--models", repo, "--drain-ms", 0, "--grace-ms", 500)

    def ask(self, requests, v1alpha=False):
        """Sends the requests on one stream; returns the responses (one per request)."""
        stub = (it.rapbg if v1alpha else it.rpbg).ServerReflectionStub(self.srv.channel)
        return list(stub.ServerReflectionInfo(iter(requests), timeout=it.RPC_TIMEOUT))

    def files(self, resp):
        self.assertTrue(resp.HasField("file_descriptor_response"), str(resp))
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in resp.file_descriptor_response.file_descriptor_proto]

    def test_list_services(self):
        for v1alpha, mod in ((False, it.rpb), (True, it.rapb)):
            (resp,) = self.ask([mod.ServerReflectionRequest(list_services="")], v1alpha)
            names = [s.name for s in resp.list_services_response.service]
            for want in ("ember.v1.Ember", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"):
                self.assertIn(want, names, "v1alpha" if v1alpha else "v1")
            self.assertEqual(len(names), len(set(names)))
            self.assertEqual(resp.original_request.list_services, "")
        self.srv.stop_clean(self)

    def test_ember_descriptor_equals_proto(self):
        R = it.rpb.ServerReflectionRequest
        reqs = [R(file_containing_symbol="ember.v1.Ember"),
                R(file_by_filename="ember/v1/ember.proto"),
                R(file_containing_symbol="ember.v1.PredictRequest"),
                R(file_containing_symbol="ember.v1.Ember.Predict"),
                R(file_containing_symbol="ember.v1.ModelStats.FailuresEntry"),
                R(file_containing_symbol="ember.v1.InferenceOptions.seed")]
        resps = self.ask(reqs)
        self.assertEqual(len(resps), len(reqs))
        want = without_json_names(descriptor_pb2.FileDescriptorProto.FromString(it.pb.DESCRIPTOR.serialized_pb))
        for req, resp in zip(reqs, resps):
            self.assertEqual(resp.original_request, req)
            (fd,) = self.files(resp)
            fd = without_json_names(fd)
            self.assertEqual(fd.name, "ember/v1/ember.proto")
            self.assertEqual(fd.package, "ember.v1")
            self.assertEqual(list(fd.message_type), list(want.message_type), str(req))
            self.assertEqual(list(fd.service), list(want.service))
        svc = self.files(resps[0])[0].service[0]
        self.assertEqual([(m.name, m.input_type, m.output_type) for m in svc.method],
                         [("Predict", ".ember.v1.PredictRequest", ".ember.v1.PredictResponse"),
                          ("Sample", ".ember.v1.SampleRequest", ".ember.v1.SampleResponse"),
                          ("ListModels", ".ember.v1.ListModelsRequest", ".ember.v1.ListModelsResponse"),
                          ("GetModel", ".ember.v1.GetModelRequest", ".ember.v1.ModelInfo"),
                          ("Train", ".ember.v1.TrainRequest", ".ember.v1.TrainProgress")])
        self.assertTrue(svc.method[4].server_streaming)
        # the health service resolves too
        (resp,) = self.ask([R(file_containing_symbol="grpc.health.v1.Health")])
        (fd,) = self.files(resp)
        self.assertEqual(fd.package, "grpc.health.v1")
        self.assertEqual([m.name for m in fd.service[0].method], ["Check", "Watch"])
        self.srv.stop_clean(self)

    def test_errors_per_request(self):
        R = it.rpb.ServerReflectionRequest
        reqs = [R(file_containing_symbol="ember.v1.Nope"),
                R(file_by_filename="nope.proto"),
                R(file_containing_extension=it.rpb.ExtensionRequest(containing_type="ember.v1.PredictRequest",
                                                                     extension_number=100)),
                R(all_extension_numbers_of_type="ember.v1.PredictRequest"),
                R(all_extension_numbers_of_type="ember.v1.Nope"),
                R(list_services="")]  # and the stream still works after errors
        resps = self.ask(reqs)
        self.assertEqual(len(resps), len(reqs))
        for resp in resps[:2] + resps[4:5]:
            self.assertTrue(resp.HasField("error_response"), str(resp))
            self.assertEqual(resp.error_response.error_code, NOT_FOUND)
            self.assertTrue(resp.error_response.error_message)
        self.assertIn("ember.v1.Nope", resps[0].error_response.error_message)
        self.assertEqual(resps[2].error_response.error_code, NOT_FOUND)
        ext = resps[3].all_extension_numbers_response
        self.assertEqual(ext.base_type_name, "ember.v1.PredictRequest")
        self.assertEqual(list(ext.extension_number), [])
        self.assertIn("ember.v1.Ember", [s.name for s in resps[5].list_services_response.service])
        # garbage on the stream: the call ends with INVALID_ARGUMENT or the error is reported in a
        # response; either way the server keeps serving
        raw = self.srv.channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        try:
            out = list(raw(iter([b"\x0a\x40ab"]), timeout=it.RPC_TIMEOUT))
            for b in out:
                r = it.rpb.ServerReflectionResponse.FromString(b)
                self.assertEqual(r.error_response.error_code, grpc.StatusCode.INVALID_ARGUMENT.value[0])
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, e.details())
        (resp,) = self.ask([R(list_services="")])
        self.assertTrue(resp.list_services_response.service)
        self.srv.stop_clean(self)

    def test_open_streams_at_shutdown(self):
        """An idle reflection stream does not keep emberd from exiting (it is cancelled when the
        grace period ends), and nothing leaks."""
        stub = it.rpbg.ServerReflectionStub(self.srv.channel)
        reqs = Requests()
        w = it.Watcher(stub.ServerReflectionInfo(iter(reqs), timeout=60))
        reqs.put(it.rpb.ServerReflectionRequest(list_services=""))
        self.assertTrue(w.next().list_services_response.service)
        reqs2 = Requests()  # a stream that never sends anything
        w2 = it.Watcher(stub.ServerReflectionInfo(iter(reqs2), timeout=60))
        time.sleep(0.1)
        t0 = time.monotonic()
        self.srv.signal()
        rc = self.srv.wait(timeout=30)
        self.srv.assert_clean(self, rc)
        self.assertLess(time.monotonic() - t0, 20)
        for watcher in (w, w2):
            code, details = watcher.wait_end()
            self.assertNotEqual(code, grpc.StatusCode.OK, details)
        reqs.close()
        reqs2.close()


if __name__ == "__main__":
    sys.exit(it.main())
