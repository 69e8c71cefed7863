"""The metrics endpoint (--metrics-listen): every line parses as Prometheus text format (a strict
parser below), histograms are consistent, counters move by exactly the calls made, the /livez
and /readyz probes follow the server's state, other paths and methods are refused, garbage,
huge and idle connections neither crash nor hang emberd, and a metrics port in use is refused
at start-up."""
import math
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ember_it as it  # noqa: E402
from ember_it import call  # noqa: E402

import grpc  # noqa: E402

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_value(v):
    if v in ("+Inf", "Inf"):
        return math.inf
    if v == "-Inf":
        return -math.inf
    if v == "NaN":
        return math.nan
    if not re.match(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z", v):
        raise ValueError("not a sample value: %r" % v)
    return float(v)


def parse_labels(s, i):
    """Parses `name="value",...}` from s[i:] (after '{'); returns (dict, index after '}')."""
    labels = {}
    while True:
        if s[i] == "}":
            return labels, i + 1
        j = s.index("=", i)
        name = s[i:j]
        if not LABEL.match(name) or name in labels:
            raise ValueError("bad or repeated label name %r" % name)
        if s[j + 1] != '"':
            raise ValueError("label value not quoted")
        k, val = j + 2, []
        while s[k] != '"':
            if s[k] == "\\":
                esc = {"\\": "\\", '"': '"', "n": "\n"}.get(s[k + 1])
                if esc is None:
                    raise ValueError("bad escape \\%s" % s[k + 1])
                val.append(esc)
                k += 2
            elif s[k] == "\n":
                raise ValueError("newline in a label value")
            else:
                val.append(s[k])
                k += 1
        labels[name] = "".join(val)
        i = k + 1
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ValueError("expected ',' or '}' after a label")


def parse_exposition(text):
    """Strict Prometheus text format 0.0.4. Returns (samples, types): samples maps
    (name, frozenset of label items) -> value; types maps family -> type. Raises ValueError."""
    if not text.endswith("\n"):
        raise ValueError("the exposition does not end with a newline")
    samples, types, helps = {}, {}, {}
    seen_families, sampled, current = set(), set(), None
    hist_series = {}  # (family, labels without le) -> {"buckets": [(le, v)], "sum", "count"}
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d: %r" % (n, line)
        if line.startswith("#"):
            m = re.match(r"# (HELP|TYPE) (\S+) (.*)\Z", line)
            if not m:
                raise ValueError("%s: a comment that is not HELP or TYPE" % where)
            kind, fam, rest = m.groups()
            if not NAME.match(fam):
                raise ValueError("%s: bad metric name" % where)
            if kind == "HELP":
                if fam in helps or fam in sampled:
                    raise ValueError("%s: HELP repeated or after the family's samples" % where)
                if re.search(r"\\[^\\n]", rest.replace("\\\\", "")):
                    raise ValueError("%s: bad escape in HELP" % where)
                helps[fam] = rest
            else:
                if fam in types or rest not in TYPES:
                    raise ValueError("%s: TYPE repeated or unknown" % where)
                if fam in sampled:
                    raise ValueError("%s: TYPE after the family's samples" % where)
                types[fam] = rest
            if current != fam:
                if fam in seen_families:
                    raise ValueError("%s: family %s is not contiguous" % (where, fam))
                seen_families.add(fam)
                current = fam
            continue
        if not line:
            raise ValueError("%s: empty line" % where)
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if not m:
            raise ValueError("%s: no metric name" % where)
        name, i, labels = m.group(1), m.end(), {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i + 1)
        if line[i:i + 1] != " ":
            raise ValueError("%s: expected one space before the value" % where)
        parts = line[i + 1:].split(" ")
        if len(parts) not in (1, 2) or (len(parts) == 2 and not re.match(r"-?\d+\Z", parts[1])):
            raise ValueError("%s: expected a value and an optional integer timestamp" % where)
        value = parse_value(parts[0])
        fam = name
        if current and types.get(current) == "histogram" and name in (current + "_bucket", current + "_sum", current + "_count"):
            fam = current
        if fam != current:
            if fam in seen_families:
                raise ValueError("%s: family %s is not contiguous" % (where, fam))
            seen_families.add(fam)
            current = fam
        if fam not in types or fam not in helps:
            raise ValueError("%s: a sample without HELP and TYPE" % where)
        sampled.add(fam)
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError("%s: a repeated series" % where)
        samples[key] = value
        t = types[fam]
        if t == "counter" and not (value >= 0 and name.endswith("_total")):
            raise ValueError("%s: a counter must be >= 0 and named *_total" % where)
        if t == "histogram":
            if name == fam:
                raise ValueError("%s: a histogram sample without _bucket/_sum/_count" % where)
            base = dict(labels)
            le = base.pop("le", None)
            hs = hist_series.setdefault((fam, frozenset(base.items())), {"buckets": [], "sum": None, "count": None})
            if name.endswith("_bucket"):
                if le is None:
                    raise ValueError("%s: a bucket without le" % where)
                hs["buckets"].append((parse_value(le), value))
            elif "le" in labels:
                raise ValueError("%s: le on _sum/_count" % where)
            elif name.endswith("_sum"):
                hs["sum"] = value
            else:
                hs["count"] = value
    for (fam, base), hs in hist_series.items():
        what = "histogram %s%s" % (fam, dict(base))
        b = hs["buckets"]
        if not b or hs["sum"] is None or hs["count"] is None:
            raise ValueError("%s: buckets, _sum and _count are all needed" % what)
        les = [le for le, _ in b]
        if les != sorted(les) or len(set(les)) != len(les) or les[-1] != math.inf:
            raise ValueError("%s: le must increase and end with +Inf: %r" % (what, les))
        counts = [v for _, v in b]
        if any(c2 < c1 for c1, c2 in zip(counts, counts[1:])):
            raise ValueError("%s: buckets are not cumulative: %r" % (what, counts))
        if counts[-1] != hs["count"]:
            raise ValueError("%s: the +Inf bucket %r is not _count %r" % (what, counts[-1], hs["count"]))
        if hs["count"] == 0 and hs["sum"] != 0:
            raise ValueError("%s: an empty histogram with a sum" % what)
    return samples, types


def get(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples, name):
    return {k: v for k, v in samples.items() if k[0] == name}


class MetricsParser(it.EmberTest):
    """The test's own parser refuses what it should (so that the real checks mean something)."""

    def test_parser_refuses_bad_text(self):
        good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n"
                "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n")
        samples, _ = parse_exposition(good)
        self.assertEqual(get(samples, "a_total", x='q"\\\n'), 1)
        bad = [
            good[:-1],                                        # no final newline
            good.replace("h_count 2", "h_count 3"),           # +Inf bucket != count
            good.replace("le=\"1\"} 1", "le=\"1\"} 3"),       # not cumulative
            good.replace("le=\"+Inf\"", "le=\"9\""),          # no +Inf bucket
            good.replace("# TYPE a_total counter\n", ""),     # no TYPE
            good.replace("a_total{", "a_total {"),            # space before labels
            good.replace("\\\"\\\\", "\\q"),                  # bad escape
            good.replace("} 1\n#", "} one\n#"),               # bad value
            good + "a_total{x=\"r\"} 1\n",                    # family not contiguous
            good.replace("a_total{x=", "a_total{x=\"1\",x="),  # repeated label
            good.replace("h_sum 3", "h_sum{le=\"1\"} 3"),     # le on _sum
        ]
        for text in bad:
            with self.assertRaises((ValueError, IndexError), msg=repr(text)):
                parse_exposition(text)


class Metrics(it.EmberTest):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        data = it.jump_data(os.path.join(self.tmp, "jump.csv"))
        self.train(os.path.join(self.repo, "m", "1.safetensors"), data, seed=1)

    def start_metrics(self, *args):
        srv = self.start("--models", self.repo, "--metrics-listen", "127.0.0.1:0", *args)
        m = re.search(r'msg="metrics listening".* port=(\d+)', srv.log())
        self.assertIsNotNone(m, srv.log())
        srv.metrics_port = int(m.group(1))
        return srv

    def fetch(self, srv, path="/metrics", method="GET"):
        """(status, headers, body text) of one HTTP request; never raises for HTTP errors."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (srv.metrics_port, path), method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def scrape(self, srv):
        status, headers, body = self.fetch(srv)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        try:
            samples, types = parse_exposition(body)
        except ValueError as e:
            self.fail("the exposition does not parse: %s\n%s" % (e, body))
        return samples, types

    def test_counters_move_by_the_calls_made(self):
        srv = self.start_metrics()
        before, types = self.scrape(srv)
        for fam, t in (("ember_requests_total", "counter"), ("ember_batch_requests", "histogram"),
                       ("ember_batch_rows", "histogram"), ("ember_queue_seconds", "histogram"),
                       ("ember_compute_seconds", "histogram"), ("ember_request_seconds", "histogram"),
                       ("ember_model_versions", "gauge"),
                       ("ember_model_load_failures_total", "counter"), ("ember_queued_requests", "gauge"),
                       ("ember_running_requests", "gauge"), ("ember_train_jobs_running", "gauge"),
                       ("ember_train_jobs_total", "counter"), ("ember_batch_allocations_total", "counter")):
            self.assertEqual(types.get(fam), t, fam)
        P, S = srv.stub.Predict, srv.stub.Sample
        opts = it.pb.InferenceOptions(samples=64, iterations=2)
        for req in (it.pb.PredictRequest(model="m", x=[0.1, 0.2], options=opts),
                    it.pb.PredictRequest(model="m", x=[0.1, 0.2, -0.5, 0.5], options=opts)):
            self.assertEqual(call(P, req)[0], grpc.StatusCode.OK)
        self.assertEqual(call(S, it.pb.SampleRequest(model="m", x=[0.3, 0.1], modes=2, options=opts))[0],
                         grpc.StatusCode.OK)
        self.expect(P, it.pb.PredictRequest(model="nope", x=[0.1, 0.2]), grpc.StatusCode.NOT_FOUND)
        self.expect(P, it.pb.PredictRequest(model="bad/name", x=[0.1, 0.2]), grpc.StatusCode.INVALID_ARGUMENT)
        self.expect(P, it.pb.PredictRequest(model="m", x=[0.1, 0.2, 0.3]), grpc.StatusCode.INVALID_ARGUMENT)
        self.expect(S, it.pb.SampleRequest(model="m", x=[float("nan"), 0.2]), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(call(srv.stub.GetModel, it.pb.GetModelRequest(model="m"))[0], grpc.StatusCode.OK)
        after, _ = self.scrape(srv)

        R = "ember_requests_total"
        expected = {
            ("Predict", "m", "OK"): 2, ("Sample", "m", "OK"): 1,
            ("Predict", "", "NOT_FOUND"): 1, ("Predict", "", "INVALID_ARGUMENT"): 1,
            ("Predict", "m", "INVALID_ARGUMENT"): 1, ("Sample", "m", "INVALID_ARGUMENT"): 1,
            ("GetModel", "", "OK"): 1,
        }
        keys = set(series(before, R)) | set(series(after, R))
        moved = {}
        for k in keys:
            d = after.get(k, 0) - before.get(k, 0)
            if d:
                lab = dict(k[1])
                moved[(lab["method"], lab["model"], lab["code"])] = d
        self.assertEqual(moved, expected)
        # three calls reached the batcher: each is in exactly one batch, with its rows
        d = lambda name: get(after, name, model="m") - get(before, name, model="m")  # noqa: E731
        self.assertEqual(d("ember_batch_requests_sum"), 3)
        self.assertEqual(d("ember_batch_rows_sum"), 4)
        self.assertEqual(d("ember_queue_seconds_count"), 3)
        self.assertGreaterEqual(d("ember_batch_requests_count"), 1)
        self.assertEqual(d("ember_compute_seconds_count"), d("ember_batch_requests_count"))
        self.assertEqual(d("ember_batch_rows_count"), d("ember_batch_requests_count"))
        self.assertGreater(d("ember_compute_seconds_sum"), 0)
        # the same three calls, stage by stage (each stage's time is non-negative; compute is not 0)
        g = lambda name, **lab: get(after, name, **lab) - get(before, name, **lab)  # noqa: E731
        self.assertEqual(types.get("ember_request_stage_seconds_total"), "counter")
        self.assertEqual(g("ember_staged_requests_total"), 3)
        stages = ("cq_to_loop", "decode", "queue", "compute", "to_loop", "reply")
        self.assertEqual({dict(k[1])["stage"] for k in series(after, "ember_request_stage_seconds_total")}, set(stages))
        for stage in stages:
            self.assertGreaterEqual(g("ember_request_stage_seconds_total", stage=stage), 0, stage)
        self.assertGreater(g("ember_request_stage_seconds_total", stage="compute"), 0)
        # and each call's whole time in emberd, in a histogram: the same three calls, whose times
        # add up to the stages' (both are taken from the same clock readings)
        self.assertEqual(d("ember_request_seconds_count"), 3)
        self.assertAlmostEqual(d("ember_request_seconds_sum"),
                               sum(g("ember_request_stage_seconds_total", stage=st) for st in stages), places=5)
        self.assertEqual(get(after, "ember_request_seconds_bucket", model="m", le="+Inf") -
                         get(before, "ember_request_seconds_bucket", model="m", le="+Inf"), 3)
        self.assertEqual(get(after, "ember_model_versions", model="m"), 1)
        self.assertEqual(get(after, "ember_model_latest_version", model="m"), 1)
        self.assertEqual(get(after, "ember_queued_requests"), 0)
        self.assertEqual(get(after, "ember_running_requests"), 0)
        self.assertEqual(get(after, "ember_serving"), 1)
        self.assertEqual(get(after, "ember_train_jobs_running"), 0)
        for result in ("published", "failed", "cancelled"):
            self.assertEqual(get(after, "ember_train_jobs_total", result=result), 0)

        # a version that fails to load: counted once, listed as a current error, 1 still served
        self.assertEqual(get(after, "ember_model_load_failures_total", model="m"), 0)
        with open(os.path.join(self.repo, "m", "2.safetensors"), "wb") as f:
            f.write(b"not a checkpoint")
        loaded = it.wait_until("the load failure in the metrics", lambda: (lambda s: s if get(
            s, "ember_model_load_errors", model="m") == 1 else None)(self.scrape(srv)[0]), timeout=20)
        self.assertEqual(get(loaded, "ember_model_load_failures_total", model="m"), 1)
        self.assertEqual(get(loaded, "ember_model_versions", model="m"), 1)
        srv.stop_clean(self)

    def test_warm_batches_allocate_nothing(self):
        """A finished batch's job and arrays are kept for the next batch: once the one worker has
        run the largest Predict and Sample batches, batches of those sizes or smaller allocate
        nothing (ember_batch_allocations_total stays flat), and a larger one is counted."""
        srv = self.start_metrics("--workers", "1")
        P, S = srv.stub.Predict, srv.stub.Sample
        opts = it.pb.InferenceOptions(samples=64, iterations=2)

        def x(rows):
            return [0.25 * (i % 5) - 0.5 for i in range(2 * rows)]

        def requests(rows):
            return ((P, it.pb.PredictRequest(model="m", x=x(rows), options=opts)),
                    (S, it.pb.SampleRequest(model="m", x=x(rows), modes=2, options=opts, return_samples=True)))

        def allocations():
            return get(self.scrape(srv)[0], "ember_batch_allocations_total")

        self.assertEqual(allocations(), 0)
        for fn, req in requests(8):
            self.assertEqual(call(fn, req)[0], grpc.StatusCode.OK)
        warm = allocations()
        self.assertGreater(warm, 0)
        for rows in (1, 8, 3, 8, 5):
            for fn, req in requests(rows):
                self.assertEqual(call(fn, req)[0], grpc.StatusCode.OK)
        self.assertEqual(allocations(), warm)
        for fn, req in requests(40):
            self.assertEqual(call(fn, req)[0], grpc.StatusCode.OK)
        self.assertGreater(allocations(), warm)
        srv.stop_clean(self)

    def test_lone_batches_spread_over_idle_cores(self):
        """With two workers, a batch that runs alone and is large enough to split (rows x samples
        >= 2 ember_infer_min_task_rows(): 64 under the SkylakeX family's kernels, 288 under the
        others) runs over both cores (ember_spread_batches_total); a small one, or any with
        --split-batches 0, does not; and the answers are bit-identical either way, and with
        helpers that sleep after every pass (--pool-wait-us 0). The threads carry the names
        emberd.md lists, the spread pool's helper only where batches spread."""
        big = it.pb.InferenceOptions(samples=512, iterations=2, seed=7)
        small = it.pb.InferenceOptions(samples=16, iterations=2, seed=7)
        x = [0.3, -0.2, -0.6, 0.4]
        answers = {}
        for split, wait in (("1", None), ("0", None), ("1", "0")):
            srv = self.start_metrics("--workers", "2", "--split-batches", split,
                                     *(("--pool-wait-us", wait) if wait else ()))
            spread = lambda: get(self.scrape(srv)[0], "ember_spread_batches_total")  # noqa: E731
            self.assertEqual(spread(), 0)
            code, big_resp, _ = call(srv.stub.Predict, it.pb.PredictRequest(model="m", x=x, options=big))
            self.assertEqual(code, grpc.StatusCode.OK)
            self.assertEqual(spread(), 1 if split == "1" else 0)
            names = set()
            for tid in os.listdir("/proc/%d/task" % srv.proc.pid):
                with open("/proc/%d/task/%s/comm" % (srv.proc.pid, tid)) as f:
                    names.add(f.read().strip())
            self.assertLessEqual({"emberd", "emberd-cq", "emberd-work"}, names)
            self.assertEqual("ember-pool" in names, split == "1")
            code, small_resp, _ = call(srv.stub.Predict, it.pb.PredictRequest(model="m", x=x, options=small))
            self.assertEqual(code, grpc.StatusCode.OK)
            self.assertEqual(spread(), 1 if split == "1" else 0)
            answers[split, wait] = (list(big_resp.y), list(big_resp.energy), list(small_resp.y))
            srv.stop_clean(self)
        self.assertEqual(answers["1", None], answers["0", None])
        self.assertEqual(answers["1", None], answers["1", "0"])

    def test_failures_are_counted_by_the_status_sent(self):
        """GetModel's ok and failures and the metrics' ember_requests_total count each call once,
        under the status it ended with: a request whose x cannot be copied (out of memory, forced
        by EMBER_FAULT_REQUEST_ALLOC in test builds) is RESOURCE_EXHAUSTED, not INVALID_ARGUMENT."""
        os.environ["EMBER_FAULT_REQUEST_ALLOC"] = "2"  # the second request that gets that far
        try:
            srv = self.start_metrics()
        finally:
            del os.environ["EMBER_FAULT_REQUEST_ALLOC"]
        if 'msg="fault injection armed"' not in srv.log():
            srv.stop_clean(self)
            self.skipTest("emberd was built without -DEMBER_FAULT_INJECTION=ON")
        P = srv.stub.Predict
        req = it.pb.PredictRequest(model="m", x=[0.1, 0.2], options=it.pb.InferenceOptions(samples=64))
        self.assertEqual(call(P, req)[0], grpc.StatusCode.OK)
        self.expect(P, req, grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory for 1 rows")
        self.expect(P, it.pb.PredictRequest(model="m", x=[0.1, 0.2, 0.3]), grpc.StatusCode.INVALID_ARGUMENT,
                    "multiple of the model's x_dim")
        self.expect(P, it.pb.PredictRequest(model="m", x=[0.1, 0.2], options=it.pb.InferenceOptions(iterations=5000)),
                    grpc.StatusCode.INVALID_ARGUMENT, "iterations must be 1..1000")
        self.expect(srv.stub.Sample, it.pb.SampleRequest(model="m", x=[0.1, 0.2], modes=5000),
                    grpc.StatusCode.INVALID_ARGUMENT, "modes must be 1..1024")
        self.expect(P, it.pb.PredictRequest(model="m", version=9, x=[0.1, 0.2]), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(call(P, req)[0], grpc.StatusCode.OK)
        st = srv.stub.GetModel(it.pb.GetModelRequest(model="m"), timeout=it.RPC_TIMEOUT).stats
        self.assertEqual((st.requests, st.ok), (7, 2))
        self.assertEqual(dict(st.failures), {"RESOURCE_EXHAUSTED": 1, "INVALID_ARGUMENT": 3, "NOT_FOUND": 1})
        samples, _ = self.scrape(srv)
        counted = {}
        for (name, labels), v in series(samples, "ember_requests_total").items():
            lab = dict(labels)
            if lab["model"] == "m":
                counted[lab["code"]] = counted.get(lab["code"], 0) + v
        self.assertEqual(counted, {"OK": 2, "RESOURCE_EXHAUSTED": 1, "INVALID_ARGUMENT": 3, "NOT_FOUND": 1})
        srv.stop_clean(self)

    def test_train_jobs(self):
        """A published job, a refused request (no job) and a cancelled job."""
        srv = self.start_metrics()
        x, y = [], []
        with open(os.path.join(self.tmp, "jump.csv")) as f:
            for line in f.read().split("\n")[1:201]:
                a, b, v = (float(t) for t in line.split(","))
                x += [a, b]
                y.append(v)
        req = dict(model="t", x=x, y=y, x_dim=2, y_dim=1, width=16, batch=32, negatives=16, seed=3)
        w = it.Watcher(srv.stub.Train(it.pb.TrainRequest(steps=30, **req), timeout=120))
        self.assertEqual(w.wait_end(120)[0], grpc.StatusCode.OK)
        w = it.Watcher(srv.stub.Train(it.pb.TrainRequest(model="t"), timeout=30))
        self.assertEqual(w.wait_end(30)[0], grpc.StatusCode.INVALID_ARGUMENT)
        w = it.Watcher(srv.stub.Train(it.pb.TrainRequest(steps=10000000, **req), timeout=120))
        w.next(60)
        running, _ = self.scrape(srv)
        self.assertEqual(get(running, "ember_train_jobs_running"), 1)
        w.cancel()

        def ended():
            s, _ = self.scrape(srv)
            done = get(s, "ember_train_jobs_total", result="cancelled") == 1
            return s if done and get(s, "ember_model_versions", model="t") == 1 else None
        after = it.wait_until("the cancelled job and the published version in the metrics", ended, timeout=30)
        self.assertEqual(get(after, "ember_train_jobs_running"), 0)
        self.assertEqual(get(after, "ember_train_jobs_total", result="published"), 1)
        self.assertEqual(get(after, "ember_train_jobs_total", result="failed"), 0)
        self.assertEqual(get(after, "ember_requests_total", method="Train", model="", code="OK"), 1)
        self.assertEqual(get(after, "ember_requests_total", method="Train", model="", code="INVALID_ARGUMENT"), 1)
        self.assertEqual(get(after, "ember_model_versions", model="t"), 1)
        srv.stop_clean(self)

    def test_probes(self):
        """/livez: 200 whenever the loop answers; /readyz: 200 only while a model is served and
        the server is not draining, 503 with the reason otherwise."""
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty)
        srv = self.start("--models", empty, "--metrics-listen", "127.0.0.1:0", "--poll-ms", 100,
                         "--drain-ms", 3000)
        srv.metrics_port = int(re.search(r'msg="metrics listening".* port=(\d+)', srv.log()).group(1))
        self.assertEqual(self.fetch(srv, "/livez")[:3:2], (200, "live\n"))
        status, _, body = self.fetch(srv, "/readyz")
        self.assertEqual((status, body), (503, "not ready: no model loaded (the repository is watched)\n"))
        self.assertEqual(self.fetch(srv, "/readyz", method="HEAD")[0], 503)
        # a model appears: ready
        os.makedirs(os.path.join(empty, "m"))
        self.publish(os.path.join(self.repo, "m", "1.safetensors"), os.path.join(empty, "m", "1.safetensors"))
        it.wait_until("ready", lambda: self.fetch(srv, "/readyz")[0] == 200)
        self.assertEqual(self.fetch(srv, "/readyz?verbose")[2], "ready\n")
        # SIGTERM: not ready at once, still live and still answering calls while it drains
        srv.signal()
        it.wait_until("not ready", lambda: self.fetch(srv, "/readyz")[0] == 503, timeout=2)
        self.assertEqual(self.fetch(srv, "/readyz")[2], "not ready: draining (the server is shutting down)\n")
        self.assertEqual(self.fetch(srv, "/livez")[0], 200)
        code, _, details = call(srv.stub.Predict, it.pb.PredictRequest(model="m", x=[0.25, 0.5]))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        srv.assert_clean(self, srv.wait())

    def test_other_requests_are_refused_and_do_not_hang(self):
        srv = self.start_metrics()
        addr = ("127.0.0.1", srv.metrics_port)
        idle = socket.create_connection(addr, timeout=10)  # sends nothing: closed after 5 s
        t_idle = time.monotonic()
        for path in ("/", "/metricsx", "/metrics/", "/x?metrics"):
            self.assertEqual(self.fetch(srv, path)[0], 404, path)
        self.assertEqual(self.fetch(srv, "/metrics?x=1")[0], 200)
        status, headers, body = self.fetch(srv, method="POST")
        self.assertEqual(status, 405)
        self.assertIn("GET", headers["Allow"])
        status, headers, body = self.fetch(srv, method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["Content-Length"]), 100)

        def raw(data, read_timeout=10):
            """Sends data, returns everything the server answers until it closes."""
            with socket.create_connection(addr, timeout=read_timeout) as sk:
                try:
                    sk.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                out = b""
                try:
                    while True:
                        got = sk.recv(65536)
                        if not got:
                            break
                        out += got
                except ConnectionResetError:
                    pass
                return out

        self.assertTrue(raw(b"\x00\xff garbage \x01\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(raw(b"GET /metrics\r\n\r\n").startswith(b"HTTP/1.1 400 "))  # no version
        self.assertTrue(raw(b"GET /metrics HTTP/1.0\n\n").startswith(b"HTTP/1.1 200 OK\r\n"))  # bare LFs
        t = time.monotonic()
        huge = raw(b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\n\r\n")
        self.assertTrue(huge == b"" or huge.startswith(b"HTTP/1.1 431 "), huge[:100])
        self.assertLess(time.monotonic() - t, 5)
        # at most 16 connections: with `idle` and 24 more opened, 16 stay open and the others are
        # closed at once (those the server closed are readable: EOF or reset)
        time.sleep(0.3)  # the connections above are closed by now (closing ends in the next loop turn)
        crowd = [socket.create_connection(addr, timeout=10) for _ in range(24)]
        time.sleep(0.5)
        closed, _, _ = select.select(crowd, [], [], 0.5)
        for sk in closed:
            try:
                self.assertEqual(sk.recv(10), b"")
            except ConnectionResetError:
                pass
        still_open = 1 + len(crowd) - len(closed)  # with `idle`
        self.assertLessEqual(still_open, 16)
        self.assertGreaterEqual(still_open, 14)  # a connection or two may still be closing
        for sk in crowd:
            sk.close()

        def scraped():
            try:
                return self.fetch(srv)[0] == 200
            except OSError:  # refused while the crowd's connections are still being closed
                return False
        it.wait_until("a scrape after the crowd left", scraped, timeout=10)
        # the idle connection is closed by the server after about 5 s
        self.assertEqual(idle.recv(100), b"")
        self.assertLess(time.monotonic() - t_idle, 9)
        idle.close()
        # gRPC is unaffected
        req = it.pb.PredictRequest(model="m", x=[0.1, 0.2], options=it.pb.InferenceOptions(samples=64))
        self.assertEqual(call(srv.stub.Predict, req)[0], grpc.StatusCode.OK)
        srv.stop_clean(self)


class MetricsStartup(it.EmberTest):
    def run_emberd(self, *args):
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(repo, exist_ok=True)
        r = subprocess.run([it.EMBERD, "--models", repo, "--listen", "127.0.0.1:0"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
        for mark in it.SANITIZER_MARKS:
            self.assertNotIn(mark, r.stdout)
        return r

    def test_port_in_use_and_bad_address_are_refused(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            r = self.run_emberd("--metrics-listen", "127.0.0.1:%d" % port)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("cannot listen for metrics on 127.0.0.1:%d" % port, r.stdout)
        r = self.run_emberd("--metrics-listen", "9090")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("expects HOST:PORT", r.stdout)


if __name__ == "__main__":
    sys.exit(it.main())
