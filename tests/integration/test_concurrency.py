"""64 concurrent clients: every answer is the one a lone request would get (batching never
changes an answer), and the server's counters show that requests were batched."""
import os
import random
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402

import grpc  # noqa: E402

CLIENTS = 64
CALLS = 10          # per client
SEEDS = 8           # clients share seeds: client t uses seed t % SEEDS
SMALL = 128         # clients with an odd seed ask for this many samples (model default 256)


class ConcurrentClients(it.EmberTest):
    def test_64_clients_batched_and_correct(self):
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        path = self.train(os.path.join(repo, "jump", "1.safetensors"), data, seed=6)
        srv = self.start("--models", repo, "--workers", 1, "--max-delay-us", 2000, "--max-batch", 64)

        # The plan: client t, call k asks for 1 or 2 rows of its seed's row list, at their
        # position there as row_offset. One local CLI run per seed over the whole list is then
        # the reference for every piece of it.
        rng = random.Random(5)
        plan = {}      # (t, k) -> (seed, offset, rows)
        rows_of = {s: [] for s in range(SEEDS)}
        for k in range(CALLS):
            for t in range(CLIENTS):
                s = t % SEEDS
                n = 1 + (t + k) % 2
                rows = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(n)]
                plan[(t, k)] = (s, len(rows_of[s]), rows)
                rows_of[s] += rows
        expected = {}
        for s in range(SEEDS):
            q = it.write_csv(os.path.join(self.tmp, "seed%d.csv" % s), ["a", "b"], rows_of[s])
            extra = ("--samples", SMALL) if s % 2 else ()
            out = self.cli("predict", "--model", path, "--input", q, "--seed", 1000 + s, "--energy", *extra)
            expected[s] = out.splitlines()[1:]
            self.assertEqual(len(expected[s]), len(rows_of[s]))

        results = {}
        errors = []
        start = threading.Barrier(CLIENTS, timeout=60)

        def client(t):
            try:
                ch = srv.new_channel()
                stub = it.pbg.EmberStub(ch)
                start.wait()
                for k in range(CALLS):
                    s, off, rows = plan[(t, k)]
                    opts = it.pb.InferenceOptions(seed=1000 + s, samples=SMALL if s % 2 else 0)
                    req = it.pb.PredictRequest(model="jump", x=[v for r in rows for v in r], options=opts,
                                               row_offset=off, version=1 if k % 3 == 0 else 0)
                    results[(t, k)] = it.call(stub.Predict, req)
                ch.close()
            except Exception as e:  # reported below; a thread must not die silently
                errors.append("client %d: %r" % (t, e))

        threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(CLIENTS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=180)
        self.assertFalse([th for th in threads if th.is_alive()], "clients still running after 180 s")
        self.assertEqual(errors, [])
        self.assertEqual(len(results), CLIENTS * CALLS)

        wrong = []
        total_rows = 0
        for (t, k), (code, resp, details) in sorted(results.items()):
            s, off, rows = plan[(t, k)]
            total_rows += len(rows)
            if code != grpc.StatusCode.OK:
                wrong.append("client %d call %d: %s %s" % (t, k, code, details))
                continue
            self.assertEqual(resp.model_version, 1)
            got = it.format_predict(resp, 1).splitlines()[1:]
            want = expected[s][off:off + len(rows)]
            if got != want:
                wrong.append("client %d call %d (seed %d rows %d..%d): got %s, want %s" %
                             (t, k, 1000 + s, off, off + len(rows) - 1, got, want))
        self.assertEqual(wrong, [], "%d of %d answers wrong" % (len(wrong), len(results)))

        info = srv.stub.GetModel(it.pb.GetModelRequest(model="jump"), timeout=it.RPC_TIMEOUT)
        st = info.stats
        n = CLIENTS * CALLS
        self.assertEqual(st.requests, n)
        self.assertEqual(st.ok, n)
        self.assertEqual(dict(st.failures), {})
        self.assertEqual(st.batched_requests, n)
        self.assertEqual(st.batched_rows, total_rows)
        self.assertGreater(st.batches, 0)
        self.assertLess(st.batches, n, "no two requests shared a batch")
        self.assertGreater(st.avg_batch_requests, 1.0)
        self.assertAlmostEqual(st.avg_batch_requests, st.batched_requests / st.batches, places=6)
        self.assertAlmostEqual(st.avg_batch_rows, st.batched_rows / st.batches, places=6)
        self.assertGreaterEqual(st.avg_batch_rows, st.avg_batch_requests)
        self.assertGreater(st.avg_compute_ms, 0.0)
        self.assertGreater(st.avg_queue_ms, 0.0)
        print("  batches %d for %d requests (%.1f requests, %.1f rows per batch; queue %.2f ms, compute %.2f ms)"
              % (st.batches, n, st.avg_batch_requests, st.avg_batch_rows, st.avg_queue_ms, st.avg_compute_ms))
        srv.stop_clean(self)

    def test_concurrent_sample_equals_cli(self):
        """Sample through the batcher: 32 clients, 5 calls each, 4 seeds; every answer equals
        the local `ember sample` rows at the same random streams."""
        clients, calls, seeds = 32, 5, 4
        repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        path = self.train(os.path.join(repo, "jump", "1.safetensors"), data, seed=7)
        srv = self.start("--models", repo, "--workers", 2, "--max-delay-us", 2000)
        rng = random.Random(9)
        plan, rows_of = {}, {s: [] for s in range(seeds)}
        for k in range(calls):
            for t in range(clients):
                s = t % seeds
                rows = [[it.grid_value(rng), it.grid_value(rng)] for _ in range(1 + (t * k) % 3)]
                plan[(t, k)] = (s, len(rows_of[s]), rows)
                rows_of[s] += rows
        mode_args = ("--modes", 3, "--radius", 0.125, "--min-mass", 0.0625)
        expected = {}
        for s in range(seeds):
            q = it.write_csv(os.path.join(self.tmp, "seed%d.csv" % s), ["a", "b"], rows_of[s])
            out = self.cli("sample", "--model", path, "--input", q, "--seed", 50 + s, *mode_args)
            by_row = {}
            for line in out.splitlines()[1:]:
                row, rest = line.split(",", 1)
                by_row.setdefault(int(row), []).append(rest)
            expected[s] = by_row

        results, errors = {}, []
        start = threading.Barrier(clients, timeout=60)

        def client(t):
            try:
                ch = srv.new_channel()
                stub = it.pbg.EmberStub(ch)
                start.wait()
                for k in range(calls):
                    s, off, rows = plan[(t, k)]
                    req = it.pb.SampleRequest(model="jump", x=[v for r in rows for v in r], row_offset=off,
                                              modes=3, radius=0.125, min_mass=0.0625,
                                              options=it.pb.InferenceOptions(seed=50 + s))
                    results[(t, k)] = it.call(stub.Sample, req)
                ch.close()
            except Exception as e:
                errors.append("client %d: %r" % (t, e))

        threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=180)
        self.assertFalse([th for th in threads if th.is_alive()], "clients still running after 180 s")
        self.assertEqual(errors, [])
        wrong = []
        for (t, k), (code, resp, details) in sorted(results.items()):
            s, off, rows = plan[(t, k)]
            if code != grpc.StatusCode.OK:
                wrong.append("client %d call %d: %s %s" % (t, k, code, details))
                continue
            got = {}
            for line in it.format_sample(resp, 1).splitlines()[1:]:
                row, rest = line.split(",", 1)
                got.setdefault(off + int(row), []).append(rest)
            want = {off + i: expected[s][off + i] for i in range(len(rows))}
            if got != want:
                wrong.append("client %d call %d: got %s, want %s" % (t, k, got, want))
        self.assertEqual(wrong, [], "%d of %d answers wrong" % (len(wrong), len(results)))
        st = srv.stub.GetModel(it.pb.GetModelRequest(model="jump"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual((st.requests, st.ok, st.batched_requests), (clients * calls,) * 3)
        self.assertGreater(st.avg_batch_requests, 1.0)
        srv.stop_clean(self)


if __name__ == "__main__":
    sys.exit(it.main())
