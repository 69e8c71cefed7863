"""Work the server must not keep doing: a request past its deadline stops holding its worker,
shutdown is not held up by a long batch, a request larger than --max-request-gflop is refused
up front, and a second emberd cannot take a port that is in use."""
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402


class Limits(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.train(os.path.join(self.repo, "m", "1.safetensors"), data, seed=1, width=64)

    def small(self, srv, timeout=it.RPC_TIMEOUT):
        req = it.pb.PredictRequest(model="m", x=[0.25, 0.5], options=it.pb.InferenceOptions(samples=64))
        return call(srv.stub.Predict, req, timeout)

    def test_expired_work_releases_its_worker(self):
        """A long request whose client gave up (deadline) is stopped within about an
        iteration: the next small request does not wait for the abandoned one."""
        srv = self.start("--models", self.repo, "--workers", 1)
        slow = it.slow_request(srv.stub, "m", [0.1, 0.2], seconds=8.0)
        code, _, _ = call(srv.stub.Predict, slow, 0.3)
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
        t = time.monotonic()
        code, _, details = self.small(srv)
        waited = time.monotonic() - t
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertLess(waited, 4.0, "the next request waited %.1fs behind abandoned work" % waited)
        info = srv.stub.GetModel(it.pb.GetModelRequest(model="m"), timeout=it.RPC_TIMEOUT)
        self.assertGreaterEqual(dict(info.stats.failures).get("DEADLINE_EXCEEDED", 0), 1)
        srv.stop_clean(self)

    def test_shutdown_is_not_held_by_a_long_batch(self):
        """SIGTERM during an 8 s batch: after --grace-ms the batch stops at its next iteration
        and the process exits 0, not after the batch."""
        srv = self.start("--models", self.repo, "--workers", 1, "--grace-ms", 300)
        slow = it.slow_request(srv.stub, "m", [0.1, 0.2], seconds=8.0)
        fut = srv.stub.Predict.future(slow, timeout=60)
        time.sleep(0.5)
        t = time.monotonic()
        srv.signal()
        rc = srv.wait(timeout=6.0)
        self.assertLess(time.monotonic() - t, 5.0)
        srv.assert_clean(self, rc)
        self.assertIn(fut.exception(timeout=10).code(),
                      (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED))

    def test_request_compute_limit(self):
        srv = self.start("--models", self.repo, "--max-request-gflop", 1)
        req = it.pb.PredictRequest(model="m", x=[0.1, 0.2] * 8,
                                   options=it.pb.InferenceOptions(samples=65536, iterations=10))
        self.expect(srv.stub.Predict, req, grpc.StatusCode.INVALID_ARGUMENT, "GFLOP", "--max-request-gflop")
        code, _, details = self.small(srv)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        srv.stop_clean(self)

    def test_port_in_use_is_refused(self):
        srv = self.start("--models", self.repo)
        r = subprocess.run([it.EMBERD, "--models", self.repo, "--listen", srv.target], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("cannot listen on", r.stdout)
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stdout)
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
