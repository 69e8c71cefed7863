"""The particle benchmark through emberd: `ember eval particle --server` acts exactly as the
local evaluation (same episodes, same answers, same trace), and an independent particle client
written here in Python - its own dynamics, success rule and oracle, calling Predict directly -
reproduces the CLI's episodes and its demonstrations."""
import csv
import io
import math
import os
import struct
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402

DIMS = 2
EPISODES = 12
SEED = 9
SAMPLES = 64


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


class Particle:
    """The task as the paper states it: PD set-point tracking, 10 sub-steps of 5 ms per control
    step, 50 control steps; success = came within 0.05 of goal 1 and of goal 2 and ended within
    0.05 of goal 2 (distances taken after each control step)."""

    def __init__(self, obs0, n):
        obs0 = [f32(v) for v in obs0]  # the text holds float32 values (9 digits)
        self.n = n
        self.pos = list(obs0[:n])
        self.vel = [0.0] * n
        self.g1 = list(obs0[2 * n:3 * n])
        self.g2 = list(obs0[3 * n:4 * n])
        self.min1 = self.min2 = math.inf
        self.phase = 0

    def obs(self):
        return [f32(v) for v in self.pos + self.vel + self.g1 + self.g2]

    def dist(self, g):
        return math.sqrt(sum((p - q) ** 2 for p, q in zip(self.pos, g)))

    def step(self, action):
        for i in range(self.n):
            a = min(1.0, max(0.0, action[i]))
            x, v = self.pos[i], self.vel[i]
            for _ in range(10):
                u = 10.0 * (a - x) - 5.0 * v
                x, v = x + v * 0.005, v + u * 0.005
            self.pos[i], self.vel[i] = x, v
        self.min1 = min(self.min1, self.dist(self.g1))
        self.min2 = min(self.min2, self.dist(self.g2))

    def oracle(self):
        if self.phase == 0 and self.dist(self.g1) < 0.01:
            self.phase = 1
        return [f32(v) for v in (self.g1 if self.phase == 0 else self.g2)]

    def success(self):
        return self.min1 < 0.05 and self.min2 < 0.05 and self.dist(self.g2) < 0.05


def read_rows_text(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], [[float(v) for v in r] for r in rows[1:]]


def read_rows(path):
    with open(path) as f:
        return read_rows_text(f.read())


class ParticleThroughEmberd(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.data = os.path.join(self.tmp, "demos.csv")
        self.cli("data", "particle", "--dims", DIMS, "--episodes", 40, "--seed", 3, "--out", self.data)
        repo = os.path.join(self.tmp, "repo")
        self.model = self.train(os.path.join(repo, "particle", "1.safetensors"), self.data, "--y-dim", DIMS,
                                steps=60, samples=SAMPLES)
        self.srv = self.start("--models", repo, "--workers", 2)

    def eval(self, *where):
        trace = os.path.join(self.tmp, "trace-%d.csv" % len(where))
        out = self.cli(*where, "eval", "particle", "--model", self.model if not where else "particle",
                       "--dims", DIMS, "--episodes", EPISODES, "--seed", SEED, "--samples", SAMPLES,
                       "--trace", trace, "--csv", "--quiet", "--threads", 1)
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(len(rows), 1, out)
        with open(trace) as f:
            return rows[0], f.read()

    def test_remote_evaluation_equals_local(self):
        local, local_trace = self.eval()
        remote, remote_trace = self.eval("--server", self.srv.target)
        self.assertEqual(remote_trace, local_trace)
        for k in ("success", "successes", "ci_lo", "ci_hi", "goal1_hit", "goal2_hit", "method"):
            self.assertEqual(remote[k], local[k], k)
        self.assertEqual(local["where"], "local")
        self.assertEqual(remote["where"], self.srv.target)
        self.assertEqual(len(local_trace.splitlines()), EPISODES + 1)
        self.srv.stop_clean(self)

    def test_independent_client_reproduces_the_cli(self):
        # the episodes' first observations, from the demonstrations of the same seed
        init = os.path.join(self.tmp, "init.csv")
        self.cli("data", "particle", "--dims", DIMS, "--episodes", EPISODES, "--seed", SEED, "--out", init)
        header, rows = read_rows(init)
        self.assertEqual(header, ["x%d" % j for j in range(4 * DIMS)] + ["y:y%d" % j for j in range(DIMS)])
        self.assertEqual(len(rows), EPISODES * 50)
        # the demonstrations are this client's oracle acting on this client's dynamics
        for e in range(EPISODES):
            p = Particle(rows[e * 50][:4 * DIMS], DIMS)
            for t in range(50):
                row = rows[e * 50 + t]
                self.assertEqual(p.obs(), [f32(v) for v in row[:4 * DIMS]], "episode %d step %d" % (e, t))
                act = p.oracle()
                self.assertEqual(act, [f32(v) for v in row[4 * DIMS:]])
                p.step(act)
            self.assertTrue(p.success(), "the oracle failed episode %d" % e)
        # the model as the policy, one Predict per control step for all episodes
        envs = [Particle(rows[e * 50][:4 * DIMS], DIMS) for e in range(EPISODES)]
        opts = it.pb.InferenceOptions(seed=SEED, samples=SAMPLES)
        for t in range(50):
            req = it.pb.PredictRequest(model="particle", x=[v for p in envs for v in p.obs()],
                                       row_offset=t * EPISODES)
            req.options.CopyFrom(opts)
            code, resp, details = call(self.srv.stub.Predict, req)
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertEqual(len(resp.y), EPISODES * DIMS)
            for e, p in enumerate(envs):
                p.step(list(resp.y[e * DIMS:(e + 1) * DIMS]))
        _, cli_trace = self.eval("--server", self.srv.target)
        _, trace = read_rows_text(cli_trace)
        for e, p in enumerate(envs):
            ep, ok, m1, m2, final = trace[e]
            self.assertEqual(int(ep), e)
            self.assertEqual(bool(ok), p.success(), "episode %d" % e)
            for mine, theirs in ((p.min1, m1), (p.min2, m2), (p.dist(p.g2), final)):
                self.assertAlmostEqual(mine, theirs, delta=1e-5)
        self.srv.stop_clean(self)

    def test_mismatched_task_refused(self):
        rc, err = self.cli_fails("--server", self.srv.target, "eval", "particle", "--model", "particle",
                                 "--dims", 3)
        self.assertEqual(rc, 2)
        self.assertIn("takes 8 x and gives 2 y; the 3-D particle task needs 12 and 3", err)
        rc, err = self.cli_fails("--server", self.srv.target, "eval", "particle", "--model", "nosuch",
                                 "--dims", 2)
        self.assertIn("NOT_FOUND", err)
        self.srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
