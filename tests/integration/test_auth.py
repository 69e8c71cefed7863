"""Access control: TLS (server certificate, optional client certificates) and bearer tokens,
with the Python client and the ember CLI. The certificates are made here with the openssl CLI:
a CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA."""
import os
import random
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

TOKENS = ("tok-alpha-0123456789abcdef", "tok-beta-fedcba9876543210")
ADMIN = "adm-gamma-5555aaaa5555aaaa"


def openssl(cwd, *args):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed:\n%s" % (" ".join(args), r.stdout))


def make_pki(d):
    """ca.pem, server.pem/.key (SAN 127.0.0.1, localhost), client.pem/.key, other-ca.pem."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ember test CA")
    openssl(d, "req", "-x509", *ec, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2",
            "-subj", "/CN=another CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        openssl(d, "req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=ember " + name)
        openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
    return {n: os.path.join(d, n) for n in ("ca.pem", "other-ca.pem", "server.pem", "server.key",
                                            "client.pem", "client.key")}


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Auth(it.EmberTest):
    @classmethod
    def setUpClass(cls):
        d = os.path.join(it.SCRATCH, "pki")
        os.makedirs(d)
        cls.pki = make_pki(d)
        cls.ca = grpc.ssl_channel_credentials(read(cls.pki["ca.pem"]))
        cls.ca_client = grpc.ssl_channel_credentials(read(cls.pki["ca.pem"]), read(cls.pki["client.key"]),
                                                     read(cls.pki["client.pem"]))

    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"), n=200)
        self.model = self.train(os.path.join(self.repo, "jump", "1.safetensors"), data, width=16, steps=20)
        rng = random.Random(5)
        self.q = it.write_csv(os.path.join(self.tmp, "q.csv"), ["a", "b"],
                              [[it.grid_value(rng), it.grid_value(rng)] for _ in range(3)])
        self.req = it.pb.PredictRequest(model="jump", x=[0.5, 0.25], options=it.pb.InferenceOptions(samples=64, seed=1))

    def tls_args(self, client_ca=False):
        a = ["--tls-cert", self.pki["server.pem"], "--tls-key", self.pki["server.key"]]
        return a + (["--tls-client-ca", self.pki["ca.pem"]] if client_ca else [])

    def token_file(self, name, *lines):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, 0o600)
        return path

    def run_cli(self, *args, env=None):
        """(exit status, stdout, stderr) of the ember CLI; never asserts the status."""
        e = dict(os.environ)
        e.pop("EMBER_TOKEN", None)
        e.update(env or {})
        r = subprocess.run([it.EMBER] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=it.CLI_TIMEOUT, env=e)
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        return r.returncode, r.stdout, r.stderr

    def cli_fails(self, needles, *args, env=None):
        rc, out, err = self.run_cli(*args, env=env)
        self.assertNotEqual(rc, 0, "ember %s should fail" % " ".join(map(str, args)))
        self.assertEqual(out, "")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        for n in needles:
            self.assertIn(n, err)
        return err

    def cli_ok(self, *args, env=None):
        rc, out, err = self.run_cli(*args, env=env)
        self.assertEqual(rc, 0, "ember %s: %s" % (" ".join(map(str, args)), err))
        return out

    # ---- TLS -------------------------------------------------------------------------------------

    def test_tls(self):
        srv = self.start("--models", self.repo, *self.tls_args(), creds=self.ca)
        self.assertIn("tls=on", srv.log())
        # Python over TLS
        code, resp, details = it.call(srv.stub.Predict, self.req)
        self.assertEqual(code, OK, details)
        self.assertEqual(len(resp.y), 1)
        self.assertEqual(srv.health.Check(it.hpb.HealthCheckRequest(), timeout=it.RPC_TIMEOUT).status,
                         it.hpb.HealthCheckResponse.SERVING)
        # a plaintext client is refused
        plain = grpc.insecure_channel(srv.target, options=[("grpc.enable_http_proxy", 0)])
        code, _, _ = it.call(it.pbg.EmberStub(plain).ListModels, it.pb.ListModelsRequest(), timeout=10)
        self.assertEqual(code, UNAVAILABLE)
        plain.close()
        # the CLI over TLS answers as local mode does
        local = self.cli("predict", "--model", self.model, "--input", self.q, "--seed", 3)
        tls = ("--server", srv.target, "--tls-ca", self.pki["ca.pem"])
        self.assertEqual(self.cli_ok(*tls, "predict", "--model", "jump", "--input", self.q, "--seed", 3), local)
        # the options also work after the verb
        self.assertEqual(self.cli_ok("--server", srv.target, "predict", "--tls-ca", self.pki["ca.pem"], "--model",
                                     "jump", "--input", self.q, "--seed", 3), local)
        self.assertIn("jump", self.cli_ok(*tls, "models"))
        self.assertEqual(self.cli_ok(*tls, "health"), "SERVING\n")
        # plaintext CLI, CA that did not sign the server's certificate
        self.cli_fails(["could not reach", "--tls-ca"], "--server", srv.target, "models")
        self.cli_fails(["not signed by --tls-ca"], "--server", srv.target, "--tls-ca", self.pki["other-ca.pem"],
                       "info", "--model", "jump")
        self.cli_fails(["--tls-ca", "cannot open"], "--server", srv.target, "--tls-ca",
                       os.path.join(self.tmp, "missing.pem"), "models")
        srv.stop_clean(self)

    def test_client_certificates_and_tokens(self):
        tokens = self.token_file("tokens", TOKENS[0])
        srv = self.start("--models", self.repo, *self.tls_args(client_ca=True), "--token-file", tokens,
                         creds=self.ca_client)
        self.assertIn("tls=mutual", srv.log())
        md = (("authorization", "Bearer " + TOKENS[0]),)
        code, _, details = it.call(lambda r, timeout: srv.stub.Predict(r, timeout=timeout, metadata=md), self.req)
        self.assertEqual(code, OK, details)
        # without a client certificate the handshake fails
        ch = grpc.secure_channel(srv.target, self.ca, options=[("grpc.enable_http_proxy", 0)])
        code, _, _ = it.call(lambda r, timeout: it.pbg.EmberStub(ch).Predict(r, timeout=timeout, metadata=md),
                             self.req, timeout=10)
        self.assertEqual(code, UNAVAILABLE)
        ch.close()
        tls = ("--server", srv.target, "--tls-ca", self.pki["ca.pem"])
        cert = ("--tls-cert", self.pki["client.pem"], "--tls-key", self.pki["client.key"])
        self.cli_fails(["could not reach", "--tls-cert"], *tls, "--token-file", tokens, "models")
        self.cli_fails(["UNAUTHENTICATED"], *tls, *cert, "models")
        self.assertIn("jump", self.cli_ok(*tls, *cert, "--token-file", tokens, "models"))
        # health needs the certificate (TLS is the transport) but no token
        self.assertEqual(self.cli_ok(*tls, *cert, "health"), "SERVING\n")
        self.cli_fails(["--tls-cert and --tls-key go together"], *tls, "--tls-cert", self.pki["client.pem"], "health")
        srv.stop_clean(self)

    # ---- tokens ----------------------------------------------------------------------------------

    def test_tokens(self):
        tokens = self.token_file("tokens", "# the lab's clients", "", "  %s  " % TOKENS[0], TOKENS[1])
        admin = self.token_file("admin", ADMIN)
        srv = self.start("--models", self.repo, "--token-file", tokens, "--admin-token-file", admin)
        self.assertIn("tokens=2 admin_tokens=1", srv.log())
        s = srv.stub
        calls = ((s.Predict, self.req),
                 (s.Sample, it.pb.SampleRequest(model="jump", x=[0.5, 0.25], modes=2,
                                                options=it.pb.InferenceOptions(samples=64))),
                 (s.ListModels, it.pb.ListModelsRequest()),
                 (s.GetModel, it.pb.GetModelRequest(model="jump")))

        def with_md(fn, value):
            md = (("authorization", value),) if value is not None else None
            return lambda r, timeout: fn(r, timeout=timeout, metadata=md)
        for fn, req in calls:
            self.assertIn("Bearer", self.expect(with_md(fn, None), req, UNAUTHENTICATED))
            self.expect(with_md(fn, "Basic dXNlcjpwYXNz"), req, UNAUTHENTICATED, "Bearer <token>")
            self.expect(with_md(fn, "Bearer"), req, UNAUTHENTICATED)
            self.expect(with_md(fn, "Bearer wrong-token"), req, PERMISSION_DENIED, "not accepted")
            self.expect(with_md(fn, "Bearer " + TOKENS[0] + "x"), req, PERMISSION_DENIED)
            self.expect(with_md(fn, "Bearer " + TOKENS[0][:-1]), req, PERMISSION_DENIED)
            for good in ("Bearer " + TOKENS[0], "Bearer " + TOKENS[1], "bearer  " + TOKENS[1], "Bearer " + ADMIN):
                code, _, details = it.call(with_md(fn, good), req)
                self.assertEqual(code, OK, "%s: %s" % (good, details))
        # health stays open
        self.assertEqual(srv.health.Check(it.hpb.HealthCheckRequest(), timeout=it.RPC_TIMEOUT).status,
                         it.hpb.HealthCheckResponse.SERVING)
        # reflection needs a token too
        stub = it.rpbg.ServerReflectionStub(srv.channel)
        R = it.rpb.ServerReflectionRequest
        with self.assertRaises(grpc.RpcError) as cm:
            list(stub.ServerReflectionInfo(iter([R(list_services="")]), timeout=it.RPC_TIMEOUT))
        self.assertEqual(cm.exception.code(), UNAUTHENTICATED)
        (resp,) = list(stub.ServerReflectionInfo(iter([R(list_services="")]), timeout=it.RPC_TIMEOUT,
                                                 metadata=(("authorization", "Bearer " + TOKENS[1]),)))
        self.assertIn("ember.v1.Ember", [x.name for x in resp.list_services_response.service])

        # the CLI: --token-file (its first token line), EMBER_TOKEN, global or verb options
        server = ("--server", srv.target)
        local = self.cli("predict", "--model", self.model, "--input", self.q, "--seed", 2)
        predict = ("predict", "--model", "jump", "--input", self.q, "--seed", 2)
        self.cli_fails(["ember predict: server says UNAUTHENTICATED", "--token-file"], *server, *predict)
        self.cli_fails(["ember predict: server says PERMISSION_DENIED"], *server, *predict,
                       env={"EMBER_TOKEN": "not-a-token"})
        self.assertEqual(self.cli_ok(*server, "--token-file", tokens, *predict), local)
        self.assertEqual(self.cli_ok(*server, *predict, "--token-file", tokens), local)
        self.assertEqual(self.cli_ok(*server, *predict, env={"EMBER_TOKEN": TOKENS[1]}), local)
        sample = ("sample", "--model", "jump", "--input", self.q, "--modes", 2, "--seed", 2)
        self.assertEqual(self.cli_ok(*server, *sample, env={"EMBER_TOKEN": ADMIN}),
                         self.cli("sample", "--model", self.model, "--input", self.q, "--modes", 2, "--seed", 2))
        self.cli_fails(["ember info: server says UNAUTHENTICATED"], *server, "info", "--model", "jump")
        self.assertIn("jump", self.cli_ok(*server, "info", "--model", "jump", env={"EMBER_TOKEN": TOKENS[0]}))
        self.cli_fails(["ember models: server says PERMISSION_DENIED"], *server, "models", env={"EMBER_TOKEN": "x"})
        self.assertEqual(self.cli_ok(*server, "health"), "SERVING\n")
        self.cli_fails(["ember bench serve: server says UNAUTHENTICATED"], "bench", "serve", *server, "--model", "jump")
        out = self.cli_ok(*server, "bench", "serve", "--model", "jump", "--token-file", tokens,
                          "--duration", 0.3 * it.SCALE, "--warmup", 0, "--streams", 2, "--samples", 64, "--threads", 1)
        self.assertIn("errors=0", out)
        srv.stop_clean(self)
        log = srv.log()
        self.assertIn('msg="call refused"', log)
        self.assertIn("status=PERMISSION_DENIED", log)
        for t in TOKENS + (ADMIN, "wrong-token", "not-a-token", "dXNlcjpwYXNz"):
            self.assertNotIn(t, log)
            self.assertNotIn(t[:12], log)

    # ---- start-up --------------------------------------------------------------------------------

    def test_startup(self):
        def refused(needle, *args):
            r = subprocess.run([it.EMBERD, "--models", self.repo, "--listen", "127.0.0.1:0"] + [str(a) for a in args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               timeout=it.START_TIMEOUT)
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn(needle, r.stdout)
            for mark in it.SANITIZER_MARKS:
                self.assertNotIn(mark, r.stdout)
            return r.stdout
        refused("--tls-cert and --tls-key go together", "--tls-cert", self.pki["server.pem"])
        refused("--tls-client-ca needs TLS", "--tls-client-ca", self.pki["ca.pem"])
        refused("cannot open", "--token-file", os.path.join(self.tmp, "none"))
        refused("holds no token", "--token-file", self.token_file("empty", "# nothing", ""))
        out = refused("line 2", "--token-file", self.token_file("bad", "fine", "two words"))
        self.assertNotIn("two words", out)
        loud = self.token_file("loud", TOKENS[0])
        os.chmod(loud, 0o644)
        # beyond loopback: a warning, without TLS or tokens; about clear text, with tokens only
        srv = self.start("--models", self.repo, "--listen", "0.0.0.0:0")
        srv.stop_clean(self)
        self.assertIn("level=warn msg=\"listening beyond loopback without TLS or tokens", srv.log())
        srv = self.start("--models", self.repo, "--listen", "0.0.0.0:0", "--token-file", loud)
        srv.stop_clean(self)
        self.assertIn("tokens travel in clear text", srv.log())
        self.assertIn("readable by other users", srv.log())
        self.assertNotIn(TOKENS[0], srv.log())
        srv = self.start("--models", self.repo, "--listen", "0.0.0.0:0", *self.tls_args(), "--token-file", loud,
                         creds=self.ca)
        srv.stop_clean(self)
        self.assertNotIn("level=warn msg=\"listening", srv.log())
        self.assertNotIn("clear text", srv.log())


if __name__ == "__main__":
    sys.exit(it.main())
