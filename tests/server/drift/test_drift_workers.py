"""Drift counts with ``--workers 2``: both workers count, /metrics and the report sum them; and
the setting that turns drift counting off."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.drift.drift_models import (
    build_shop_repository,
    expected_numeric,
    http_json,
    rest_inputs,
    shop_frame,
)
from tests.serving import ServerProcess


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-workers") / "models"
    build_shop_repository(root, ["shop"])
    return root


def feature_counters(url: str, feature: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "onyxserve_drift_feature_rows":
            for s in fam.samples:
                if s.labels["model"] == "shop" and s.labels["feature"] == feature:
                    out[s.labels["bin"]] = s.value
    return out


def test_two_workers_counts_sum_in_metrics_and_report(repo):
    # row windows under --workers N close at the checks, on every worker's rows
    env = {"ONYXSERVE_DRIFT_WINDOW_ROWS": "30", "ONYXSERVE_DRIFT_SNAPSHOT_S": "0.2"}
    with ServerProcess(repo, args=["--model-control", "none", "--workers", "2"], env=env) as server:
        sent = []
        # each urllib request is a new connection: SO_REUSEPORT spreads them over the workers
        for i in range(60):  # bounded: stop once both workers have counted rows
            frame = shop_frame(10, seed=200 + i).fillna({"c": 5.0})  # JSON has no NaN
            status, body = http_json(server.http_url + "/v2/models/shop/infer", {"inputs": rest_inputs(frame)})
            assert status == 200, body
            sent.append(frame)
            status, body = http_json(server.http_url + "/v2/models/shop/drift")
            assert status == 200, body
            if i >= 5 and len(body["sources"]) == 2 and all(s["rows"] > 0 for s in body["sources"]):
                break
        sources = body["sources"]
        assert len(sources) == 2 and all(s["rows"] > 0 for s in sources), sources
        rows = 10 * len(sent)
        assert body["workers"] == 2 and body["since_load"]["rows"] == rows
        assert sum(s["rows"] for s in sources) == rows
        frame = __import__("pandas").concat(sent, ignore_index=True)
        a = next(r for r in body["since_load"]["features"] if r["name"] == "a")
        assert a["live_counts"] == expected_numeric(frame["a"].to_numpy(float), np.array(a["edges"]))
        # any worker may answer the scrape: every answer is the sum over both
        for _ in range(6):
            counters = feature_counters(server.http_url, "a")
            assert [counters[b] for b in a["bins"]] == a["live_counts"]
            assert sum(counters.values()) == rows
        time.sleep(0.5)  # a check has run on each worker since the last rows
        for _ in range(4):  # whichever worker answers: its windows partition the rows since load
            status, body = http_json(server.http_url + "/v2/models/shop/drift")
            closed = body["windows"]
            assert closed and all(w["rows"] >= 30 for w in closed) and body["current_window"]["rows"] < 30
            assert sum(w["rows"] for w in closed) + body["current_window"]["rows"] == rows


def test_counters_never_drop_across_an_unload_and_load_in_one_worker(repo):
    """--workers 2, explicit model control: one worker unloads and reloads the version (both
    calls on one connection, so one worker); the summed counters every scrape answers with never
    go backwards, and then grow by exactly the rows sent; that worker's report starts again."""
    import http.client

    with ServerProcess(repo, args=["--model-control", "explicit", "--workers", "2"]) as server:
        rows = 0
        for i in range(60):  # bounded: until both workers have counted rows
            frame = shop_frame(10, seed=300 + i).fillna({"c": 5.0})
            status, body = http_json(server.http_url + "/v2/models/shop/infer", {"inputs": rest_inputs(frame)})
            assert status == 200, body
            rows += 10
            status, body = http_json(server.http_url + "/v2/models/shop/drift")
            if i >= 5 and len(body["sources"]) == 2 and all(s["rows"] > 0 for s in body["sources"]):
                break
        assert len(body["sources"]) == 2 and sum(feature_counters(server.http_url, "a").values()) == rows
        host, port = server.http_url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for action in ("unload", "load"):
            conn.request("POST", f"/v2/repository/models/shop/{action}", body=b"{}",
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
            for _ in range(4):  # whichever worker answers, the counters hold every row counted
                assert sum(feature_counters(server.http_url, "a").values()) == rows, action
        conn.close()
        frame = shop_frame(10, seed=400).fillna({"c": 5.0})
        sent = 0
        for _ in range(10):
            status, body = http_json(server.http_url + "/v2/models/shop/infer", {"inputs": rest_inputs(frame)})
            if status == 200:  # the worker that unloaded has it again: every request succeeds
                sent += 10
        assert sent == 100
        for _ in range(4):
            assert sum(feature_counters(server.http_url, "a").values()) == rows + sent
        # reports count the rows since each worker (re)loaded: never more than the counters
        status, body = http_json(server.http_url + "/v2/models/shop/drift")
        assert status == 200 and body["since_load"]["rows"] < rows + sent


def test_drift_off_counts_nothing(repo):
    env = {"ONYXSERVE_DRIFT": "false"}
    with ServerProcess(repo, args=["--model-control", "none"], env=env) as server:
        frame = shop_frame(10, seed=1).fillna({"c": 5.0})
        status, _ = http_json(server.http_url + "/v2/models/shop/infer", {"inputs": rest_inputs(frame)})
        assert status == 200
        status, body = http_json(server.http_url + "/v2/models/shop/drift")
        assert status == 404 and "drift monitoring is off" in body["error"]
        assert feature_counters(server.http_url, "a") == {}
