"""Safe version changes (docs/versions-and-eval.md): a version whose signature (x_dim, y_dim,
the columns' names) differs from the one before it is not served by default until serving.conf allows it, after a
restart too; serving.conf's `version = N` (written by `ember pin`) pins the default version and
its removal (`ember unpin`) returns to the latest; a pin or a file emberd cannot use is reported
and the default stays where it was."""
import os
import random
import re
import sys
import time
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

POLL_MS = 150


def two_y_data(path, n=300, seed=3):
    """x = (a, b), y = (a + b, a - b): x_dim 2 like jump_data, but y_dim 2."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = it.grid_value(rng), it.grid_value(rng)
        rows.append((a, b, a + b, a - b))
    return it.write_csv(path, ["a", "b", "y0", "y1"], rows)


def renamed_y(jump):
    """jump's rows with y named `z`: the same dimensions, another signature."""
    path = jump.replace(".csv", "-z.csv")
    with open(jump) as f, open(path, "w") as out:
        header = f.readline().rstrip("\n").split(",")
        out.write(",".join(header[:-1] + ["y:z"]) + "\n")
        out.write(f.read())
    return path


class Versions(it.EmberTest):
    built = None  # the three models, trained once for every test

    def setUp(self):
        super().setUp()
        if Versions.built is None:
            build = os.path.join(it.SCRATCH, "versions-build")
            os.makedirs(build)
            jump = it.jump_data(os.path.join(build, "jump.csv"))
            Versions.built = (
                self.train(os.path.join(build, "a.safetensors"), jump, seed=1),
                self.train(os.path.join(build, "b.safetensors"), jump, seed=2, width=24),
                self.train(os.path.join(build, "wide.safetensors"), two_y_data(os.path.join(build, "y2.csv")),
                           "--y-dim", 2, seed=3),
                self.train(os.path.join(build, "renamed.safetensors"), renamed_y(jump), seed=4))
        self.a, self.b, self.wide, self.renamed = Versions.built
        self.repo = os.path.join(self.tmp, "repo")
        self.mdir = os.path.join(self.repo, "m")
        os.makedirs(self.mdir)
        self.conf = os.path.join(self.mdir, "serving.conf")

    def start_repo(self):
        srv = self.start("--models", self.repo, "--poll-ms", POLL_MS, "--workers", 1,
                         "--metrics-listen", "127.0.0.1:0")
        m = re.search(r'msg="metrics listening".* port=(\d+)', srv.log())
        self.assertIsNotNone(m, srv.log())
        srv.metrics_port = int(m.group(1))
        return srv

    def metric(self, srv, name):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open("http://127.0.0.1:%d/metrics" % srv.metrics_port, timeout=10) as r:
            body = r.read().decode()
        m = re.search(r'^%s\{model="m"\} (\S+)$' % re.escape(name), body, re.M)
        self.assertIsNotNone(m, "no %s for model m in:\n%s" % (name, body))
        return float(m.group(1))

    def info(self, srv, version=0):
        return srv.stub.GetModel(it.pb.GetModelRequest(model="m", version=version), timeout=it.RPC_TIMEOUT)

    def answered_by(self, srv, version=0, x=(0.5, 0.25)):
        resp = srv.stub.Predict(it.pb.PredictRequest(model="m", version=version, x=list(x),
                                                     options=it.pb.InferenceOptions(samples=64)),
                                timeout=it.RPC_TIMEOUT)
        return resp.model_version, resp.y_dim

    def write_conf(self, text):
        """serving.conf replaced atomically, as `ember pin` does."""
        tmp = os.path.join(self.mdir, ".serving.conf.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf)

    def wait_served(self, srv, version, what):
        """Waits until Predict for version 0 is answered by `version`: well within a few polls."""
        t0 = time.monotonic()
        it.wait_until(what, lambda: self.answered_by(srv)[0] == version, timeout=10 * it.SCALE)
        return time.monotonic() - t0

    def test_changed_signature_is_refused_until_allowed(self):
        self.publish(self.a, os.path.join(self.mdir, "1.safetensors"))
        srv = self.start_repo()
        self.assertEqual(self.answered_by(srv), (1, 1))
        self.assertEqual(self.metric(srv, "ember_model_load_errors"), 0)

        # version 2 takes the same x but answers two y values: a client reading one y per row
        # would silently read garbage, so version 1 keeps serving and the refusal is visible
        self.publish(self.wide, os.path.join(self.mdir, "2.safetensors"))
        info = it.wait_until("version 2 refused",
                             lambda: (lambda i: i if i.load_errors else None)(self.info(srv)))
        self.assertEqual(list(info.versions), [1, 2], "a refused version is still loaded")
        self.assertEqual((info.default_version, info.version, info.y_dim), (1, 1, 1))
        self.assertEqual(len(info.load_errors), 1)
        le = info.load_errors[0]
        self.assertEqual(le.version, 2)
        for needle in ("version 2 (x_dim=2 y_dim=2 x=[a,b] y=[y0,y1])", "version 1 (x_dim=2 y_dim=1 x=[a,b] y=[y0])",
                       "not served by default",
                       "allow_signature_change = 2", os.path.join("m", "serving.conf")):
            self.assertIn(needle, le.message)
        self.assertTrue(le.path.endswith(os.path.join("m", "2.safetensors")), le.path)
        self.assertLess(abs(le.unix_time - time.time()), 120)
        time.sleep(3 * POLL_MS / 1000.0)  # rescans must not change their mind, or log it again
        self.assertEqual(self.answered_by(srv), (1, 1))
        refused = [l for l in srv.log().splitlines() if 'msg="model version refused" model=m version=2 ' in l]
        self.assertEqual(len(refused), 1, "\n".join(refused))
        self.assertIn("level=error", refused[0])
        self.assertIn('signature="x_dim=2 y_dim=2 x=[a,b] y=[y0,y1]" served_signature="x_dim=2 y_dim=1 x=[a,b] y=[y0]"',
                      refused[0])
        self.assertEqual(self.metric(srv, "ember_model_load_errors"), 1)
        self.assertEqual(self.metric(srv, "ember_model_load_failures_total"), 1)
        self.assertEqual(self.metric(srv, "ember_model_latest_version"), 1)
        # a client that names version 2 (a canary) gets it
        self.assertEqual(self.answered_by(srv, version=2), (2, 2))

        # a version with the served signature after it is served: the lineage goes on from 1
        self.publish(self.b, os.path.join(self.mdir, "3.safetensors"))
        self.wait_served(srv, 3, "version 3 (same signature as 1) served")
        self.assertEqual([e.version for e in self.info(srv).load_errors], [2])
        srv.stop_clean(self)

        # the rule reads only the directory: a restarted emberd refuses version 2 as well
        srv = self.start_repo()
        self.assertEqual(self.answered_by(srv), (3, 1))
        self.assertEqual([e.version for e in self.info(srv).load_errors], [2])
        os.remove(os.path.join(self.mdir, "3.safetensors"))
        self.wait_served(srv, 1, "version 1 again once version 3 is gone")

        # the model directory says the change is intended: version 2 becomes the default
        self.write_conf("# y went from 1 to 2 columns on purpose\nallow_signature_change = 2\n")
        self.wait_served(srv, 2, "version 2 served once allowed")
        info = self.info(srv)
        self.assertEqual((info.default_version, info.y_dim, len(info.load_errors)), (2, 2, 0))
        self.assertIn('msg="model version accepted" model=m version=2', srv.log())
        self.assertEqual(self.metric(srv, "ember_model_load_errors"), 0)
        srv.stop_clean(self)

    def test_renamed_column_is_a_signature_change(self):
        # the same dimensions, but y is called z now: a client reading y0 by name would break
        self.publish(self.a, os.path.join(self.mdir, "1.safetensors"))
        srv = self.start_repo()
        self.publish(self.renamed, os.path.join(self.mdir, "2.safetensors"))
        info = it.wait_until("version 2 refused", lambda: (lambda i: i if i.load_errors else None)(self.info(srv)))
        self.assertIn("version 2 (x_dim=2 y_dim=1 x=[a,b] y=[z]) changes the signature of version 1 "
                      "(x_dim=2 y_dim=1 x=[a,b] y=[y0])", info.load_errors[0].message)
        self.assertEqual(self.answered_by(srv), (1, 1))
        self.write_conf("allow_signature_change = 2\n")
        self.wait_served(srv, 2, "the renamed version served once allowed")
        self.assertEqual(list(self.info(srv).y_names), ["z"])
        srv.stop_clean(self)

    def test_pin_and_unpin(self):
        for v, src in ((1, self.a), (2, self.b), (3, self.a)):
            self.publish(src, os.path.join(self.mdir, "%d.safetensors" % v))
        srv = self.start_repo()
        self.assertEqual(self.answered_by(srv), (3, 1))
        self.assertEqual((self.info(srv).default_version, self.info(srv).pinned_version), (3, 0))

        # ember pin writes serving.conf; emberd serves version 2 by default from its next rescan
        self.cli("pin", "--models", self.repo, "--model", "m", "--version", 2)
        with open(self.conf) as f:
            self.assertRegex(f.read(), r"(?m)^version = 2$")
        took = self.wait_served(srv, 2, "the pinned version 2 served")
        self.assertLess(took, 5.0 * it.SCALE, "the pin took %.1fs" % took)
        info = self.info(srv)
        self.assertEqual((info.default_version, info.pinned_version, info.version, info.width), (2, 2, 2, 24))
        self.assertEqual(list(info.versions), [1, 2, 3], "pinning deletes nothing")
        self.assertEqual(self.answered_by(srv, version=3)[0], 3)
        self.assertEqual(self.metric(srv, "ember_model_latest_version"), 2)

        # a version published while pinned does not move the default
        self.publish(self.b, os.path.join(self.mdir, "4.safetensors"))
        it.wait_until("version 4 loaded", lambda: 4 in self.info(srv).versions)
        self.assertEqual(self.answered_by(srv)[0], 2)

        # ember pin refuses a version the directory does not have, and changes nothing
        code, err = self.cli_fails("pin", "--models", self.repo, "--model", "m", "--version", 9)
        self.assertEqual(code, 1)
        self.assertIn("has no version 9", err)
        self.assertIn("versions: 1, 2, 3, 4", err)
        with open(self.conf) as f:
            self.assertRegex(f.read(), r"(?m)^version = 2$")

        # a pin written by hand to a missing version: reported, and version 2 keeps serving
        self.write_conf("version = 9\n")
        info = it.wait_until("the pin error", lambda: (lambda i: i if i.load_errors else None)(self.info(srv)))
        self.assertEqual(len(info.load_errors), 1)
        le = info.load_errors[0]
        self.assertEqual(le.version, 9)
        self.assertTrue(le.path.endswith(os.path.join("m", "serving.conf")), le.path)
        self.assertIn("pinned version 9 is not loaded (loaded: 1, 2, 3, 4); version 2 stays the default", le.message)
        self.assertEqual((info.default_version, info.pinned_version), (2, 9))
        self.assertEqual(self.answered_by(srv)[0], 2)
        self.assertRegex(srv.log(), r'level=error msg="model serving policy problem" model=m what="version" '
                                    r'error="pinned version 9 is not loaded')
        self.assertEqual(self.metric(srv, "ember_model_load_errors"), 1)

        # a file emberd cannot parse: reported, the last policy that parsed (the pin to 9) stays
        self.write_conf("version: 3\n")
        info = it.wait_until("the parse error",
                             lambda: (lambda i: i if any("serving.conf is not used" in e.message
                                                         for e in i.load_errors) else None)(self.info(srv)))
        self.assertIn("line 1: expected `key = value`", "\n".join(e.message for e in info.load_errors))
        self.assertEqual(self.answered_by(srv)[0], 2)

        # ember unpin: the version line goes (the file with it: nothing else is set), latest again
        code, err = self.cli_fails("unpin", "--models", self.repo, "--model", "m")
        self.assertIn("serving.conf: line 1: expected `key = value`", err, "a broken file is not edited blind")
        self.write_conf("version = 2\n")
        self.cli("unpin", "--models", self.repo, "--model", "m")
        self.assertFalse(os.path.exists(self.conf))
        self.wait_served(srv, 4, "the latest version once unpinned")
        info = self.info(srv)
        self.assertEqual((info.default_version, info.pinned_version, len(info.load_errors)), (4, 0, 0))
        self.assertEqual(self.metric(srv, "ember_model_load_errors"), 0)
        srv.stop_clean(self)

    def test_pin_at_start_up_and_to_a_refused_version(self):
        self.publish(self.a, os.path.join(self.mdir, "1.safetensors"))
        self.publish(self.wide, os.path.join(self.mdir, "2.safetensors"))
        self.publish(self.b, os.path.join(self.mdir, "3.safetensors"))
        self.write_conf("version = 1  # rollback\n")
        srv = self.start_repo()
        self.assertEqual(self.answered_by(srv), (1, 1))
        self.assertEqual([e.version for e in self.info(srv).load_errors], [2])

        # version 2 breaks the signature: it cannot be pinned either
        self.cli("pin", "--models", self.repo, "--model", "m", "--version", 2)
        info = it.wait_until("the refused pin",
                             lambda: (lambda i: i if len(i.load_errors) == 2 else None)(self.info(srv)))
        self.assertIn("pinned version 2 is refused (version 2 (x_dim=2 y_dim=2 x=[a,b] y=[y0,y1]) changes the signature",
                      info.load_errors[1].message)
        self.assertEqual(self.answered_by(srv), (1, 1))
        srv.stop_clean(self)

        # started with a pin to a version that is not there, emberd serves no default version
        # rather than another one, and says why
        self.write_conf("version = 7\n")
        srv = self.start_repo()
        self.expect(srv.stub.Predict, it.pb.PredictRequest(model="m", x=[0.5, 0.25]), grpc.StatusCode.NOT_FOUND,
                    "model 'm' has no default version (pinned version 7 is not loaded (loaded: 1, 2, 3); "
                    "no version is the default); name a version (loaded: 1, 2, 3)")
        self.assertEqual(self.answered_by(srv, version=3)[0], 3)
        self.assertEqual(self.info(srv).default_version, 0)
        x = it.write_csv(os.path.join(self.tmp, "x.csv"), ["a", "b"], [(0.5, 0.25)])
        code, err = self.cli_fails("--server", srv.target, "predict", "--model", "m", "--input", x)
        self.assertIn("m has no version the server serves by default (pinned version 7 is not loaded", err)
        self.assertIn("; name one with --version N", err)
        info = self.cli("--server", srv.target, "info", "--model", "m")
        self.assertRegex(info, r"(?m)^version +none served by default \(loaded: 1,2,3\)$")
        self.assertRegex(info, r"(?m)^pinned +version 7 \(serving.conf\)$")
        self.assertIn("pinned version 7 is not loaded", info)
        self.cli("unpin", "--models", self.repo, "--model", "m")
        self.wait_served(srv, 3, "the latest version once unpinned")
        srv.stop_clean(self)

    def test_pin_is_local_only(self):
        self.publish(self.a, os.path.join(self.mdir, "1.safetensors"))
        srv = self.start_repo()
        code, err = self.cli_fails("--server", srv.target, "pin", "--model", "m", "--version", 1)
        self.assertEqual(code, 2)
        self.assertIn("runs where the repository is, without --server: ember pin --models DIR", err)
        for args, needle in ((("--models", self.repo, "--model", "m"), "--models, --model and --version are required"),
                             (("--models", self.repo, "--model", "m", "--version", 0), "--version must be a version number >= 1"),
                             (("--models", self.repo, "--model", "../m", "--version", 1), "model name '../m' is not valid"),
                             (("--models", self.repo, "--model", "nope", "--version", 1), "/nope is not a model directory")):
            code, err = self.cli_fails("pin", *args)
            self.assertIn(needle, err)
        self.assertFalse(os.path.exists(self.conf))
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
