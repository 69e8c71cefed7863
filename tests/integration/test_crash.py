"""Crash safety: emberd killed with SIGKILL in the middle of a Train job's publication and in the
middle of a repository reload, then started again on the same repository. Whatever the moment,
the restarted server serves the last complete version of each model, loses nothing that was
already published, serves no partial or temporary file, and leaves none of its own behind.

The moments are reached with the EMBER_FAULT_* hooks of test builds (server/server.h):
EMBER_FAULT_PUBLISH_PAUSE stops a job right after its model is saved under the hidden name
(`saved`) or right after that file is linked as the new version (`linked`);
EMBER_FAULT_SCAN_PAUSE stops a rescan once it has loaded the new files, before it applies them.
A kill while the library writes the temporary file itself (before `saved`) is stood in for by
the partial file such a kill leaves: a truncated `<hidden name>.tmp.<pid>.0`."""
import os
import re
import shutil
import signal
import socket
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

OK = grpc.StatusCode.OK
SETTINGS = dict(width=16, steps=40, batch=32, negatives=16, seed=3, samples=64)
# Jobs here run at emberd's own priority: at the default --train-nice 19 (SCHED_IDLE) a job only
# gets CPU nothing else wants, and on a shared, loaded machine (a slow TSan build all the more) it
# could take minutes to reach its publication. What these tests check does not depend on it.
JOB_NICE = ("--train-nice", 0)


def files(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def host_label():
    """The host part of emberd's hidden publication names (train.c: hidden_name)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()[:64]) or "host"


class Crash(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.csv = it.jump_data(os.path.join(self.tmp, "jump.csv"), n=200)
        self.x, self.y = [], []
        with open(self.csv) as f:
            for line in list(f)[1:]:
                a, b, y = (float(v) for v in line.split(","))
                self.x += [a, b]
                self.y.append(y)
        self.repo = os.path.join(self.tmp, "repo")
        self.mdir = os.path.join(self.repo, "m")
        self.v1 = self.train(os.path.join(self.mdir, "1.safetensors"), self.csv, width=16, steps=20, seed=1)
        with open(self.v1, "rb") as f:
            self.v1_bytes = f.read()

    def request(self, **kw):
        # the CSV's column names, so that version 2 has version 1's signature
        args = dict(SETTINGS, model="m", x=self.x, y=self.y, x_dim=2, y_dim=1, x_names=["a", "b"], y_names=["y0"])
        args.update(kw)
        return it.pb.TrainRequest(**args)

    def start_faulty(self, **env):
        srv = self.start("--models", self.repo, "--poll-ms", 100000, "--workers", 1, *JOB_NICE, env=env)
        if 'msg="fault injection armed"' not in srv.log():
            srv.stop_clean(self)
            self.skipTest("emberd was built without -DEMBER_FAULT_INJECTION=ON")
        return srv

    def kill9(self, srv):
        """SIGKILL, as a crash or the OOM killer would; returns the dead process's pid."""
        srv.signal(signal.SIGKILL)
        self.assertEqual(srv.wait(), -signal.SIGKILL)
        return srv.proc.pid

    def served(self, srv, model="m"):
        code, info, details = it.call(srv.stub.GetModel, it.pb.GetModelRequest(model=model))
        self.assertEqual(code, OK, details)
        return list(info.versions), info.version, [(e.version, e.message) for e in info.load_errors]

    def predict_version(self, srv, version=0):
        req = it.pb.PredictRequest(model="m", version=version, x=[0.5, 0.25],
                                   options=it.pb.InferenceOptions(samples=64, seed=1))
        code, resp, details = it.call(srv.stub.Predict, req)
        self.assertEqual(code, OK, details)
        return resp.model_version

    def train_ok(self, srv, version):
        w = it.Watcher(srv.stub.Train(self.request(), timeout=120))
        code, details = w.wait_end(120)
        self.assertEqual(code, OK, details)
        last = None
        while not w.messages.empty():
            last = w.messages.get()
        self.assertEqual(last.version, version)
        it.wait_until("version %d served" % version, lambda: self.served(srv)[1] == version)

    def kill_at(self, point):
        """Starts a Train job that stops at `point` of its publication, kills emberd there;
        returns the directory's files at the moment of the kill and the dead pid."""
        srv = self.start_faulty(EMBER_FAULT_PUBLISH_PAUSE=point)
        self.assertEqual(self.served(srv), ([1], 1, []))
        w = it.Watcher(srv.stub.Train(self.request(), timeout=120))
        it.wait_until("the job paused at %s" % point,
                      lambda: "site=publish_pause point=%s" % point in srv.log(), timeout=120)
        at_kill = files(self.mdir)
        pid = self.kill9(srv)
        self.assertNotEqual(w.wait_end()[0], OK)
        return at_kill, pid

    def assert_clean_dir(self, versions):
        self.assertEqual(files(self.mdir), ["%d.safetensors" % v for v in versions])
        with open(self.v1, "rb") as f:
            self.assertEqual(f.read(), self.v1_bytes, "version 1 changed")

    # ---- publication ----------------------------------------------------------------------------

    def test_kill_after_save_before_link(self):
        """Killed with the model saved under its hidden name, not yet a version: nothing new is
        served, the hidden file (and a partial temporary of the same job, as a kill one moment
        earlier leaves it) is removed at start-up, and the next job takes version 2."""
        at_kill, pid = self.kill_at("saved")
        hidden = [f for f in at_kill if f.startswith(".")]
        self.assertEqual(len(hidden), 1, at_kill)
        self.assertEqual([f for f in at_kill if not f.startswith(".")], ["1.safetensors"])
        with open(os.path.join(self.mdir, hidden[0]), "rb") as f:
            head = f.read(300)
        with open(os.path.join(self.mdir, "%s.tmp.%d.0" % (hidden[0], pid)), "wb") as f:
            f.write(head)  # what a kill during the library's write leaves
        srv = self.start("--models", self.repo, "--workers", 1, *JOB_NICE)
        self.assertEqual(self.served(srv), ([1], 1, []))
        self.assertEqual(self.predict_version(srv), 1)
        self.assert_clean_dir([1])
        self.assertRegex(srv.log(), r'msg="removed a stale publication file" path=\S+/m/\.train-')
        self.train_ok(srv, 2)
        self.assert_clean_dir([1, 2])
        srv.stop_clean(self)

    def test_kill_after_link(self):
        """Killed with the new version linked in but the hidden name not yet removed: the new
        version is published, and served after the restart; the hidden name is removed."""
        at_kill, pid = self.kill_at("linked")
        self.assertEqual([f for f in at_kill if not f.startswith(".")], ["1.safetensors", "2.safetensors"])
        self.assertEqual(len(at_kill), 3, at_kill)
        srv = self.start("--models", self.repo, "--workers", 1, *JOB_NICE)
        self.assertEqual(self.served(srv), ([1, 2], 2, []))
        self.assertEqual(self.predict_version(srv), 2)
        self.assertEqual(self.predict_version(srv, 1), 1)
        self.assert_clean_dir([1, 2])
        self.train_ok(srv, 3)
        self.assert_clean_dir([1, 2, 3])
        srv.stop_clean(self)

    def test_cleanup_spares_live_and_foreign_files(self):
        """Start-up removes only its own host's publication files whose emberd is gone: a live
        process's (another emberd publishing into the same repository) and another host's (a
        shared file system) stay; none of them is ever served."""
        live = ".train-%s-%d-1.safetensors" % (host_label(), os.getpid())  # this test: alive
        foreign = ".train-otherhost.example-1-1.safetensors"
        for name in (live, foreign, live + ".tmp.%d.0" % os.getpid()):
            shutil.copyfile(self.v1, os.path.join(self.mdir, name))
        srv = self.start("--models", self.repo, "--workers", 1)
        self.assertEqual(self.served(srv), ([1], 1, []))
        self.assertEqual(files(self.mdir), sorted(["1.safetensors", live, foreign, live + ".tmp.%d.0" % os.getpid()]))
        self.assertNotIn("stale publication file", srv.log())
        srv.stop_clean(self)

    # ---- reload -----------------------------------------------------------------------------------

    def test_kill_during_reload(self):
        """Killed while a rescan has loaded version 2 (published by rename) and failed on a
        version 3 that is still being copied (a plain, non-atomic write): after the restart,
        version 2 is served, version 3 is a load error until its copy is complete, and
        versions 1 and 2 are intact."""
        v2 = self.train(os.path.join(self.tmp, "v2.safetensors"), self.csv, width=24, steps=20, seed=2)
        v3 = self.train(os.path.join(self.tmp, "v3.safetensors"), self.csv, width=8, steps=20, seed=3)
        srv = self.start_faulty(EMBER_FAULT_SCAN_PAUSE="1")
        self.assertEqual(self.served(srv), ([1], 1, []))
        with open(v3, "rb") as f:
            v3_bytes = f.read()
        with open(os.path.join(self.mdir, "3.safetensors"), "wb") as f:  # a copy in progress
            f.write(v3_bytes[:len(v3_bytes) // 2])
        self.publish(v2, os.path.join(self.mdir, "2.safetensors"))
        it.wait_until("the rescan paused", lambda: "site=scan_pause loaded=1" in srv.log(), timeout=60)
        self.assertEqual(self.served(srv)[:2], ([1], 1))  # loaded, not yet applied
        self.kill9(srv)
        srv = self.start("--models", self.repo, "--workers", 1, "--poll-ms", 200)
        versions, version, errors = self.served(srv)
        self.assertEqual((versions, version), ([1, 2], 2))
        self.assertEqual([e[0] for e in errors], [3], errors)
        self.assertEqual(self.predict_version(srv), 2)
        with open(os.path.join(self.mdir, "2.safetensors"), "rb") as f, open(v2, "rb") as g:
            self.assertEqual(f.read(), g.read())
        # the copy completes: version 3 is served
        with open(os.path.join(self.mdir, "3.safetensors"), "ab") as f:
            f.write(v3_bytes[len(v3_bytes) // 2:])
        it.wait_until("version 3 served", lambda: self.served(srv) == ([1, 2, 3], 3, []))
        self.assertEqual(self.predict_version(srv), 3)
        self.assert_clean_dir([1, 2, 3])
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
