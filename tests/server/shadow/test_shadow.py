"""Shadow evaluation end to end: production answers, the shadow version sees the same rows and is
compared, never answering.

Real parts only: three fraud versions exported by the real export path (indexed in registry.db),
stages set through the registry, the real server process on loopback, gRPC and HTTP clients.
Expected figures come from the scikit-learn pipelines themselves, offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.repository.registry import Registry
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.model_factory import FRAUD_FEATURES, fraud_frame
from tests.serving import ServerProcess

POLL = "0.2"
ROWS_PER_REQUEST = 2


def _fit(c: float, seed: int, drop: tuple[str, ...] = ()):
    X, y = fraud_frame(seed=seed)
    X = X.drop(columns=list(drop))
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(X, y), X


def _pick_rows(p1, p2) -> np.ndarray:
    """40 rows where v1 and v2 disagree on 12 and agree on 28 (some of those positive), none within
    1e-3 of the 0.5 boundary (float32 ONNX scores must give the label sklearn gives)."""
    X, _ = fraud_frame(n=4000, seed=11)
    a, b = p1.predict_proba(X)[:, 1], p2.predict_proba(X)[:, 1]
    safe = (np.abs(a - 0.5) > 1e-3) & (np.abs(b - 0.5) > 1e-3)
    la, lb = a >= 0.5, b >= 0.5
    disagree = np.flatnonzero(safe & (la != lb))[:12]
    both_positive = np.flatnonzero(safe & la & lb)[:8]
    both_negative = np.flatnonzero(safe & ~la & ~lb)[:20]
    chosen = np.concatenate([disagree, both_positive, both_negative])
    assert len(disagree) == 12 and len(both_positive) == 8, "the two fits must disagree on some rows"
    np.random.default_rng(3).shuffle(chosen)
    return X.iloc[chosen].to_numpy(dtype=np.float32)


@pytest.fixture(scope="module")
def shadow_repo(tmp_path_factory):
    """fraud 1 and 2: two fits on the same 30 features; 3: a fit without ``Amount`` (29 features).
    All approved, no stage yet. Returns (root, pipelines, rows)."""
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("shadow") / "models"
    pipelines = {}
    for version, (c, seed, drop) in enumerate([(1.0, 0, ()), (0.05, 1, ()), (1.0, 2, ("Amount",))], start=1):
        pipeline, X = _fit(c, seed, drop)
        assert export_model(pipeline, name="fraud", repository=root, sample=X.iloc[:100]).version == str(version)
        pipelines[str(version)] = pipeline
    registry = Registry(root)
    for version in ("1", "2", "3"):
        registry.approve("fraud", version)
    return root, pipelines, _pick_rows(pipelines["1"], pipelines["2"])


@pytest.fixture
def repo(shadow_repo, tmp_path):
    root, pipelines, rows = shadow_repo
    copy = tmp_path / "models"
    shutil.copytree(root, copy)
    return copy, pipelines, rows


def offline(pipeline, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(fraud), label) from the scikit-learn pipeline itself."""
    frame = pd.DataFrame(rows.astype(np.float64), columns=FRAUD_FEATURES)
    return pipeline.predict_proba(frame)[:, 1], pipeline.predict(frame)


def request(rows: np.ndarray, version: str = "") -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="fraud", model_version=version)
    req.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    req.raw_input_contents.append(rows.tobytes())
    return req


def answer(response: pb.ModelInferResponse) -> tuple[str, tuple[bytes, ...], tuple[str, ...]]:
    """What a client receives, as bytes: version, raw outputs, output names/types/shapes."""
    described = tuple(f"{o.name}:{o.datatype}:{list(o.shape)}" for o in response.outputs)
    return response.model_version, tuple(response.raw_output_contents), described


def probabilities(response: pb.ModelInferResponse) -> np.ndarray:
    names = [o.name for o in response.outputs]
    return np.frombuffer(response.raw_output_contents[names.index("probabilities")], "<f4").reshape(-1, 2)[:, 1]


def send_all(server: ServerProcess, rows: np.ndarray, version: str = "") -> list[pb.ModelInferResponse]:
    """One request per ROWS_PER_REQUEST rows, one after another."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return [stub.ModelInfer(request(rows[i : i + ROWS_PER_REQUEST], version), timeout=10)
                for i in range(0, len(rows), ROWS_PER_REQUEST)]


def report(server: ServerProcess) -> dict:
    return json.load(urllib.request.urlopen(f"{server.http_url}/v2/models/fraud/shadow", timeout=10))


def wait_report(server: ServerProcess, predicate, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = report(server)
        if predicate(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"shadow report never got there: {json.dumps(last, indent=1)[:3000]}")


def settled(r: dict) -> bool:
    return r["requests"]["in_flight"] == 0


def shadow_metrics(server: ServerProcess) -> dict[str, float]:
    """onyxserve_shadow_* samples of fraud as 'name{label=value,...}' -> value (labels sorted)."""
    text = urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("onyxserve_shadow_") and 'model="fraud"' in line:
            key, value = line.rsplit(" ", 1)
            name, labels = key.split("{", 1)
            parts = sorted(p for p in labels.rstrip("}").split(",") if not p.startswith("model="))
            out[f"{name}{{{','.join(parts)}}}"] = float(value)
    return out


def test_shadow_is_compared_on_production_traffic_and_never_answers(repo, tmp_path):
    root, pipelines, rows = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    registry.promote("fraud", "2", "shadow")
    p1, l1 = offline(pipelines["1"], rows)
    p2, l2 = offline(pipelines["2"], rows)
    n_requests = len(rows) // ROWS_PER_REQUEST
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        empty = report(server)  # the shadow serves: the report exists before any traffic
        assert (empty["active"], empty["rows"]["mirrored"], empty["labels"]["agreement_rate"]) == (True, 0, None)

        mirrored = send_all(server, rows)
        explicit = send_all(server, rows, "1")
        # the client's answer is byte-for-byte version 1's, and version 1's offline scores
        assert [answer(r) for r in mirrored] == [answer(r) for r in explicit]
        assert all(r.model_version == "1" for r in mirrored)
        served = np.concatenate([probabilities(r) for r in mirrored])
        np.testing.assert_allclose(served, p1, atol=1e-5)
        assert np.abs(p1 - p2).max() > 0.1  # the shadow really answers differently

        r = wait_report(server, lambda r: settled(r) and r["rows"]["mirrored"] == len(rows))
        assert r["production_version"] == "1" and r["shadow_version"] == "2" and r["task"] == "binary"
        assert r["requests"] == {"mirrored": n_requests, "dropped": 0, "errored": 0, "in_flight": 0}
        assert r["rows"] == {"mirrored": len(rows), "dropped": 0, "errored": 0}
        agree = int(np.sum(l1 == l2))
        assert (r["labels"]["agree"], r["labels"]["disagree"]) == (agree, len(rows) - agree) == (28, 12)
        assert r["labels"]["agreement_rate"] == pytest.approx(28 / 40)
        dp = np.sort(np.abs(p2 - p1))
        diff = r["probability_diff"]
        assert diff["of"] == "positive class" and diff["count"] == len(rows)
        assert diff["mean"] == pytest.approx(dp.mean(), abs=1e-5)
        assert diff["max"] == pytest.approx(dp.max(), abs=1e-5)
        for q, key in ((0.5, "p50"), (0.9, "p90")):  # bins are 0.001 wide
            k = q * len(dp)
            assert dp[int(np.ceil(k)) - 1] - 0.0011 <= diff[key] <= dp[min(int(np.ceil(k)), len(dp) - 1)] + 0.0011
        assert sum(b[2] for b in diff["histogram"]) == len(rows)
        assert r["shadow_latency_seconds"]["count"] == n_requests

        # explicit versions (production's or the shadow's own) are not mirrored
        send_all(server, rows[:8], "2")
        time.sleep(0.5)
        assert report(server)["rows"]["mirrored"] == len(rows)

        # Prometheus counters (what a fleet sums) say the same
        m = shadow_metrics(server)
        labels = 'shadow_version="2",version="1"'
        assert m[f'onyxserve_shadow_rows_total{{outcome="mirrored",{labels}}}'] == len(rows)
        assert m[f'onyxserve_shadow_requests_total{{outcome="mirrored",{labels}}}'] == n_requests
        assert m[f'onyxserve_shadow_label_rows_total{{agreement="agree",{labels}}}'] == 28
        assert m[f'onyxserve_shadow_label_rows_total{{agreement="disagree",{labels}}}'] == 12
        assert m[f"onyxserve_shadow_probability_diff_count{{{labels}}}"] == len(rows)
        assert m[f"onyxserve_shadow_probability_diff_sum{{{labels}}}"] == pytest.approx(dp.sum(), abs=1e-3)
        assert m[f'onyxserve_shadow_probability_diff_bucket{{le="+Inf",{labels}}}'] == len(rows)

        # the REST transport shares the dataplane: its requests are mirrored too
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 30],
                                       "data": rows[:2].reshape(-1).tolist()}]}).encode()
        post = urllib.request.Request(f"{server.http_url}/v2/models/fraud/infer", data=body, method="POST")
        rest = json.load(urllib.request.urlopen(post, timeout=10))
        assert rest["model_version"] == "1"
        wait_report(server, lambda r: settled(r) and r["rows"]["mirrored"] == len(rows) + 2)

        # V2 ModelConfig names the shadow in its parameters
        config = triton.InferenceServerClient(server.grpc_target).get_model_config("fraud").config
        assert config.parameters["shadow_version"].string_value == "2"

        # the readable report, as text and as self-contained HTML
        html = tmp_path / "shadow.html"
        done = subprocess.run(
            [sys.executable, "-m", "onyxserve", "shadow-report", "--url", server.http_url, "fraud", "--html", str(html)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        agree += int(np.sum(l1[:2] == l2[:2]))  # the REST request's two rows
        rate = f"{agree / (len(rows) + 2):.4%} ({agree} agree, {len(rows) + 2 - agree} disagree)"
        assert "label agreement" in done.stdout and rate in done.stdout, done.stdout
        page = html.read_text()
        assert page.count("data:image/png;base64,") == 1 and "production 1 vs shadow 2" in page


def test_a_failing_shadow_never_changes_the_answer_and_is_counted(repo):
    root, pipelines, rows = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    registry.promote("fraud", "3", "shadow")  # 29 features: the clients' [N, 30] rows cannot decode
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        mirrored = send_all(server, rows)
        explicit = send_all(server, rows, "1")
        assert [answer(r) for r in mirrored] == [answer(r) for r in explicit]
        np.testing.assert_allclose(np.concatenate([probabilities(r) for r in mirrored]),
                                   offline(pipelines["1"], rows)[0], atol=1e-5)
        n_requests = len(rows) // ROWS_PER_REQUEST
        r = wait_report(server, lambda r: settled(r) and r["requests"]["errored"] == n_requests)
        assert r["shadow_version"] == "3"
        assert r["rows"] == {"mirrored": 0, "dropped": 0, "errored": len(rows)}
        assert list(r["errors"]) == ["decode"] and r["errors"]["decode"]["count"] == n_requests
        assert "expected [N, 29]" in r["errors"]["decode"]["last_message"]
        m = shadow_metrics(server)
        assert m['onyxserve_shadow_errors_total{kind="decode",shadow_version="3",version="1"}'] == n_requests
    # logged once per kind, not once per request
    assert server.log().count("shadow version 3 failed (decode)") == 1


def test_a_full_shadow_drops_and_counts_never_waits(repo):
    root, pipelines, rows = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    registry.promote("fraud", "2", "shadow")
    p1 = offline(pipelines["1"], rows[:1])[0]
    sent, answers = 0, []
    with ServerProcess(root, args=["--poll-interval", POLL, "--shadow-max-in-flight", "1"]) as server:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(5):  # bounded: rounds of 64 concurrent requests until one is dropped
                futures = [stub.ModelInfer.future(request(rows[:1]), timeout=20) for _ in range(64)]
                answers += [probabilities(f.result()) for f in futures]
                sent += len(futures)
                r = wait_report(server, settled)
                if r["requests"]["dropped"] > 0:
                    break
        np.testing.assert_allclose(np.concatenate(answers), np.repeat(p1, sent), atol=1e-5)
        r = wait_report(server, settled)
        assert r["requests"]["dropped"] > 0, "64 concurrent requests never overran an in-flight limit of 1"
        assert r["requests"]["errored"] == 0
        assert r["requests"]["mirrored"] + r["requests"]["dropped"] == sent
        assert r["rows"]["dropped"] == r["requests"]["dropped"]
        assert r["labels"]["agree"] + r["labels"]["disagree"] == r["rows"]["mirrored"]
        m = shadow_metrics(server)
        assert m['onyxserve_shadow_requests_total{outcome="dropped",shadow_version="2",version="1"}'] == \
            r["requests"]["dropped"]


def test_removing_the_shadow_stage_stops_mirroring(repo):
    root, _, rows = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    registry.promote("fraud", "2", "shadow")
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        send_all(server, rows[:10])
        wait_report(server, lambda r: settled(r) and r["rows"]["mirrored"] == 10)
        # the registry has no "clear stage": deleting the shadow version removes its stage
        done = subprocess.run(
            [sys.executable, "-m", "onyxserve", "registry", "delete", "fraud", "2", "--repository", str(root)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        removed = time.monotonic()
        r = wait_report(server, lambda r: not r["active"], timeout_s=10)
        assert time.monotonic() - removed < 3.0, "the shadow stage outlived a few poll intervals"
        send_all(server, rows)
        time.sleep(0.5)
        r = report(server)
        assert (r["active"], r["shadow_version"], r["rows"]["mirrored"], r["requests"]["dropped"]) == (False, "2", 10, 0)
        config = triton.InferenceServerClient(server.grpc_target).get_model_config("fraud").config
        assert "shadow_version" not in config.parameters
        # a new shadow starts a new comparison
        registry.promote("fraud", "3", "shadow")
        r = wait_report(server, lambda r: r["active"], timeout_s=10)
        assert (r["shadow_version"], r["rows"]["mirrored"]) == ("3", 0)


def test_a_model_without_a_shadow_says_so(repo):
    root, _, _ = repo
    Registry(root).promote("fraud", "1", "production")
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        with pytest.raises(urllib.error.HTTPError) as err:
            report(server)
        assert err.value.code == 404
        assert "--stage shadow" in json.load(err.value)["error"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.http_url}/v2/models/nope/shadow", timeout=10)
        assert err.value.code == 404
