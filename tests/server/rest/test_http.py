"""The HTTP side: V2 REST health, metadata, JSON inference and Prometheus metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_endpoints(server):
    assert get(f"{server.http_url}/v2/health/live")[0] == 200
    assert get(f"{server.http_url}/v2/health/ready")[0] == 200
    assert get(f"{server.http_url}/v2/models/fraud/ready")[0] == 200
    assert get(f"{server.http_url}/v2/models/fraud/versions/1/ready")[0] == 200
    assert get(f"{server.http_url}/v2/models/ghost/ready")[0] == 503


def test_rest_infer_matches_sklearn(server, model_repo):
    _, models = model_repo
    pipeline, X = models["price"]
    frame = X.dropna().iloc[:5]
    body = {"inputs": [
        {"name": c, "datatype": "BYTES" if c == "city" else "FP64", "shape": [5], "data": frame[c].tolist()}
        for c in frame.columns
    ]}
    status, answer = post(f"{server.http_url}/v2/models/price/infer", body)
    assert status == 200, answer
    value = next(o for o in answer["outputs"] if o["name"] == "value")
    np.testing.assert_allclose(value["data"], pipeline.predict(frame), rtol=1e-5, atol=1e-3)


def test_rest_errors_are_json_with_status(server):
    status, answer = post(f"{server.http_url}/v2/models/ghost/infer", {"inputs": []})
    assert status == 404 and "ghost" in answer["error"]
    status, answer = post(f"{server.http_url}/v2/models/fraud/infer", b"{not json")
    assert status == 400 and "JSON" in answer["error"]
    status, answer = post(f"{server.http_url}/v2/models/fraud/infer",
                          {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]})
    assert status == 400 and "input" in answer["error"] and "30" in answer["error"]


def test_metrics_count_requests(server):
    post(f"{server.http_url}/v2/models/fraud/infer",
         {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": [0.0] * 30}]})
    status, text = get(f"{server.http_url}/metrics")
    assert status == 200
    text = text.decode()
    for name in ("onyxserve_requests_total", "onyxserve_request_duration_seconds_bucket",
                 "onyxserve_queue_duration_seconds_bucket", "onyxserve_compute_duration_seconds_bucket",
                 "onyxserve_batch_rows_bucket", "onyxserve_batches_total", "onyxserve_queue_depth",
                 "onyxserve_model_ready"):
        assert name in text, name
    ok = [line for line in text.splitlines()
          if line.startswith("onyxserve_requests_total{") and 'model="fraud"' in line and 'outcome="OK"' in line]
    assert ok and float(ok[0].split()[-1]) >= 1
