"""Tumbling drift windows set per model in config.json: by rows (closed after the batch that
fills one) and by time; each window's span and rows; a shift flagged at the close of the first
window after its onset while since_load dilutes it; the windows partition since_load."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.repository.config import ConfigError, ModelConfig

from tests.server.drift.drift_models import build_shop_repository, expected_numeric, http_json, shop_frame
from tests.server.drift.test_drift import by_name, check_tests
from tests.serving import ServerProcess, triton_feature_inputs

ROWS = {"max_batch_size": 256, "drift_window_rows": 1000}
TIMED = {"max_batch_size": 256, "drift_window_seconds": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-windows") / "models"
    build_shop_repository(root, ["by_rows"], ROWS, baseline_rows=20_000)
    build_shop_repository(root, ["by_time"], TIMED, baseline_rows=20_000)
    env = {"ONYXSERVE_DRIFT_SNAPSHOT_S": "0.2"}
    with ServerProcess(root, args=["--model-control", "none"], env=env) as s:
        yield s


def send(server: ServerProcess, model: str, frame, rows_per_request: int = 100) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    for start in range(0, len(frame), rows_per_request):  # one at a time: one batch each
        client.infer(model, triton_feature_inputs(frame.iloc[start : start + rows_per_request]), client_timeout=30)
    client.close()


def report(server: ServerProcess, model: str) -> dict:
    status, body = http_json(f"{server.http_url}/v2/models/{model}/drift")
    assert status == 200, body
    return body


def test_row_windows_flag_a_shift_within_one_window_of_its_onset(server):
    clean = shop_frame(3_500, seed=41)
    shifted = shop_frame(2_500, seed=42, shift_a=0.5)
    send(server, "by_rows", clean)
    send(server, "by_rows", shifted)  # onset after 3,500 rows: in the middle of window 3
    body = report(server, "by_rows")
    assert body["window_settings"]["rows"] == 1000
    windows = body["windows"]
    assert [w["index"] for w in windows] == [0, 1, 2, 3, 4, 5]
    assert [w["rows"] for w in windows] == [1000] * 6  # closed by the batch that filled each
    # (other features may false-alarm at the stated rate: BH at 0.05 per window; E measures it)
    assert all("a" not in w["drifted_features"] for w in windows[:3])
    assert "a" in windows[4]["drifted_features"]  # the first window wholly after the onset
    for w in windows:
        assert w["end_unix"] >= w["start_unix"] and w["seconds"] == pytest.approx(w["end_unix"] - w["start_unix"], abs=2e-3)
    for a, b in zip(windows, windows[1:]):
        assert b["start_unix"] == pytest.approx(a["end_unix"], abs=2e-3)  # tumbling: no gap, no overlap
    last = body["window"]
    assert last["index"] == 5 and last["rows"] == 1000
    check_tests(last, static=body["since_load"])
    a = by_name(last)["a"]
    edges = np.array(by_name(body["since_load"])["a"]["edges"])
    assert a["live_counts"] == expected_numeric(shifted["a"].to_numpy(float)[1500:], edges)
    assert body["current_window"]["rows"] == 0 and not body["current_window"]["closed"]
    # since load: every row, the shift diluted by 3,500 clean ones (still flagged at this size)
    assert body["since_load"]["rows"] == 6_000
    since_a = by_name(body["since_load"])["a"]
    assert since_a["statistic"] < by_name(last)["a"]["statistic"]


def test_time_windows_close_on_time_with_their_span(server):
    before = report(server, "by_time")["current_window"]["index"]
    deadline = time.monotonic() + 10
    while report(server, "by_time")["current_window"]["index"] == before:  # a window just opened
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rows = shop_frame(400, seed=43)
    send(server, "by_time", rows)
    opened = report(server, "by_time")["current_window"]
    assert opened["rows"] == 400 and opened["seconds"] < 2
    deadline = time.monotonic() + 10  # 2 s windows checked every 0.2 s: wait until it closed
    while report(server, "by_time")["current_window"]["index"] == opened["index"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    body = report(server, "by_time")
    w = next(x for x in body["windows"] if x["index"] == opened["index"])
    assert w["rows"] == 400 and 2.0 <= w["seconds"] <= 3.5  # a loaded machine may check late
    assert body["window_settings"]["seconds"] == 2
    assert sum(x["rows"] for x in body["windows"]) + body["current_window"]["rows"] == body["since_load"]["rows"]


def test_window_settings_in_config_json_are_checked(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"drift_window_rows": 5000, "drift_window_seconds": 60}))
    config = ModelConfig.load(tmp_path)
    assert (config.drift_window_rows, config.drift_window_seconds) == (5000, 60)
    (tmp_path / "config.json").write_text(json.dumps({"drift_window_rows": -1}))
    with pytest.raises(ConfigError, match="drift_window_rows"):
        ModelConfig.load(tmp_path)


def gauges(server: ServerProcess, model: str) -> dict[tuple[str, str, str], float]:
    """(family, series, view) -> value of the drift gauges on /metrics for ``model``."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.server.drift.test_drift import urllib_get

    out = {}
    for fam in text_string_to_metric_families(urllib_get(server.http_url + "/metrics")):
        for s in fam.samples:
            if s.name.startswith("onyxserve_drift_") and s.labels.get("model") == model and "series" in s.labels:
                out[(s.name, s.labels["series"], s.labels["view"])] = s.value
            elif s.name == "onyxserve_drift_window_rows" and s.labels.get("model") == model:
                out[(s.name, "", "window")] = s.value
    return out


def test_the_gauges_carry_the_report(server):
    body = report(server, "by_rows")  # after the row-window test: the last window is shifted
    g = gauges(server, "by_rows")
    assert g[("onyxserve_drift_window_rows", "", "window")] == body["window"]["rows"] == 1000
    for view in ("window", "since_load"):
        for r in body[view]["features"] + body[view]["predictions"]:
            assert g[("onyxserve_drift_drifted", r["name"], view)] == float(r["drifted"]), (view, r["name"])
            assert g[("onyxserve_drift_p_value", r["name"], view)] == pytest.approx(r["p_value"], rel=1e-12)
            assert g[("onyxserve_drift_q_value", r["name"], view)] == pytest.approx(r["q_value"], rel=1e-12)
            assert g[("onyxserve_drift_statistic", r["name"], view)] == pytest.approx(r["statistic"], rel=1e-12)
    assert g[("onyxserve_drift_drifted", "a", "window")] == 1.0
