"""Out of space during a Train job's publication: emberd under a file size limit (RLIMIT_FSIZE,
as a full disk or a quota would stop the write) answers the job RESOURCE_EXHAUSTED with a
message that says so without naming server paths, publishes nothing, leaves no file behind,
and keeps serving; a model under the limit is published as version 1 afterwards. With SIGXFSZ
ignored and at its default disposition (which would kill emberd at the first write past the
limit if it did not ignore the signal itself)."""
import os
import resource
import signal
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

LIMIT = 16384  # bytes: a 64-wide model is about 35 KiB, a 4-wide one about 3 KiB; the log stays under it


def limit_files(ignore_sigxfsz):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
        if ignore_sigxfsz:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return preexec


def files(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


class OutOfSpace(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.csv = it.jump_data(os.path.join(self.tmp, "jump.csv"), n=100)
        self.x, self.y = [], []
        with open(self.csv) as f:
            for line in list(f)[1:]:
                a, b, y = (float(v) for v in line.split(","))
                self.x += [a, b]
                self.y.append(y)
        self.repo = os.path.join(self.tmp, "repo")
        self.train(os.path.join(self.repo, "other", "1.safetensors"), self.csv, width=8, steps=5)

    def request(self, width):
        return it.pb.TrainRequest(model="m", x=self.x, y=self.y, x_dim=2, y_dim=1, width=width, steps=5,
                                  batch=16, negatives=8, seed=1, samples=64)

    def run_train(self, srv, width):
        w = it.Watcher(srv.stub.Train(self.request(width), timeout=120))
        code, details = w.wait_end(120)
        last = None
        while not w.messages.empty():
            last = w.messages.get()
        return code, details, last

    def check(self, ignore_sigxfsz):
        srv = self.start("--models", self.repo, "--workers", 1, preexec_fn=limit_files(ignore_sigxfsz))
        code, details, _ = self.run_train(srv, 64)
        self.assertTrue(srv.running(), "emberd died: %s\n%s" % (srv.proc.returncode, srv.log_tail()))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        for needle in ("cannot publish model m", "out of space", "File too large", "nothing was written"):
            self.assertIn(needle, details)
        self.assertNotIn(self.tmp, details, "the message names a server path")
        self.assertEqual(files(os.path.join(self.repo, "m")), [])
        self.assertIn("out of space", srv.log())
        # still serving, and a model under the limit is published as version 1
        req = it.pb.PredictRequest(model="other", x=[0.5, 0.25], options=it.pb.InferenceOptions(samples=64))
        self.assertEqual(it.call(srv.stub.Predict, req)[0], grpc.StatusCode.OK)
        code, details, last = self.run_train(srv, 4)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(last.version, 1)
        self.assertEqual(files(os.path.join(self.repo, "m")), ["1.safetensors"])
        srv.stop_clean(self)

    def test_sigxfsz_ignored(self):
        self.check(True)

    def test_sigxfsz_default(self):
        self.check(False)


if __name__ == "__main__":
    sys.exit(it.main())
