"""Drift monitoring end to end: a real server process, real gRPC requests, the HTTP report,
the Prometheus exposition and the drift-report command, checked against numpy computed here."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.server.drift.statistics import pool_cells
from prometheus_client.parser import text_string_to_metric_families
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, false_discovery_control, ks_2samp

from tests.server.drift.drift_models import (
    CITIES,
    build_shop_repository,
    expected_numeric,
    http_json,
    reference_psi,
    shop_frame,
)
from tests.serving import ServerProcess, triton_feature_inputs

MODELS = ["shop", "shop_shift", "shop_reject", "shop_window"]
# a queue delay so that concurrent requests share batches (the mixed good/bad batch test)
CONFIG = {"max_batch_size": 256, "max_queue_delay_microseconds": 20000}
ROWS_PER_REQUEST = 100


@pytest.fixture(scope="module")
def drift_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift") / "models"
    build_shop_repository(root, MODELS, CONFIG)
    env = {"ONYXSERVE_DRIFT_WINDOW_S": "3", "ONYXSERVE_DRIFT_SNAPSHOT_S": "0.5"}
    with ServerProcess(root, args=["--model-control", "none"], env=env) as server:
        yield server


def send(server: ServerProcess, model: str, frame) -> list[dict]:
    """``frame`` in requests of ROWS_PER_REQUEST rows (bounded); the responses' outputs."""
    client = triton.InferenceServerClient(server.grpc_target)
    out = []
    for start in range(0, len(frame), ROWS_PER_REQUEST):
        part = frame.iloc[start : start + ROWS_PER_REQUEST]
        result = client.infer(model, triton_feature_inputs(part), client_timeout=30)
        out.append({"label": result.as_numpy("label"), "probabilities": result.as_numpy("probabilities")})
    client.close()
    return out


def report(server: ServerProcess, model: str, version: str = "") -> dict:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/drift"
    status, body = http_json(server.http_url + path)
    assert status == 200, body
    return body


def by_name(view: dict) -> dict[str, dict]:
    return {r["name"]: r for r in view["features"] + view["predictions"]}


def check_counts_and_psi(view: dict, frame, outputs: list[dict]) -> None:
    """Every count equals numpy's on the rows sent; every PSI equals the reference on the counts."""
    rows = by_name(view)
    n = len(frame)
    assert view["rows"] == n
    for name in ("a", "b", "c"):
        r = rows[name]
        assert r["rows"] == n
        assert r["live_counts"] == expected_numeric(frame[name].to_numpy(float), np.array(r["edges"])), name
    city = rows["city"]
    sent = frame["city"].tolist()
    assert city["bins"] == [*sorted(CITIES), "unknown", "missing"]  # the encoder's (sorted) categories
    assert city["live_counts"] == [*(sent.count(c) for c in sorted(CITIES)),
                                   sum(v not in CITIES and v != "" for v in sent), sent.count("")]
    labels = np.concatenate([o["label"] for o in outputs])
    proba = np.concatenate([o["probabilities"] for o in outputs]).astype(np.float64)
    assert rows["label"]["live_counts"] == [int((labels == 0).sum()), int((labels == 1).sum())]
    for k, cls in enumerate(("0", "1")):
        r = rows[f"probability[{cls}]"]
        assert r["live_counts"] == np.histogram(np.clip(proba[:, k], 0, 1), np.linspace(0, 1, 11))[0].tolist()
    for r in rows.values():
        assert r["psi"] == pytest.approx(reference_psi(r["live_counts"], r["baseline_counts"]), rel=1e-9, abs=1e-12)
        assert r["psi_over_threshold"] == (r["psi"] > 0.2)
    check_tests(view)


def check_tests(view: dict, alpha: float = 0.05, static: dict | None = None) -> None:
    """Each series' test equals scipy's on the counts (slots repeated as data), and the flags are
    Benjamini-Hochberg's over the version's series. A window's view takes the baseline counts
    from ``static`` (the report's since_load)."""
    rows = by_name(view)
    baselines = by_name(static or view)
    for r in rows.values():
        live, base = np.array(r["live_counts"]), np.array(baselines[r["name"]]["baseline_counts"])
        if r["test"] == "ks":
            slots = np.arange(len(live))
            ref = ks_2samp(np.repeat(slots, live), np.repeat(slots, base), method="asymp")
            assert r["statistic"] == ref.statistic, r["name"]
            assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-3, abs=1e-6), r["name"]
        else:
            L, B = pool_cells(live[None, :], base[None, :])
            keep = (L[0] + B[0]) > 0
            ref = chi2_contingency(np.array([L[0][keep], B[0][keep]]), correction=False)
            assert r["statistic"] == pytest.approx(ref.statistic, rel=1e-9), r["name"]
            assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300), r["name"]
        assert r["js_distance"] == pytest.approx(jensenshannon(live, base, base=2), rel=1e-9)
    tested = [r for r in rows.values() if r["rows"] >= r["min_rows"]]
    q = false_discovery_control([r["p_value"] for r in tested], method="bh")
    for r, qv in zip(tested, q):
        assert r["q_value"] == pytest.approx(qv, rel=1e-9)
        assert r["drifted"] == (qv <= alpha), r["name"]


def test_rows_drawn_like_training_are_not_flagged(drift_server):
    frame = shop_frame(2000, seed=11)
    outputs = send(drift_server, "shop", frame)
    body = report(drift_server, "shop")
    assert body["version"] == "1" and body["workers"] == 1 and body["unmonitored"] == {}
    since = body["since_load"]
    check_counts_and_psi(since, frame, outputs)
    assert since["drifted_features"] == [] and since["drifted_predictions"] == []
    assert max(r["psi"] for r in since["features"]) < 0.05  # sampling noise only
    # baselines: the 2000 exported rows; c's missing rate near the 5% drawn
    rows = by_name(since)
    assert all(sum(r["baseline_counts"]) == 2000 for r in since["features"])
    assert 0.02 < rows["c"]["baseline_missing_rate"] < 0.08 and 0.02 < rows["c"]["missing_rate"] < 0.08
    assert rows["city"]["unknown_rate"] == 0.0
    assert report(drift_server, "shop", "1")["since_load"]["rows"] == 2000


def test_a_shifted_feature_and_unseen_categories_are_exactly_the_ones_flagged(drift_server):
    frame = shop_frame(2000, seed=12, shift_a=1.5, unseen_share=0.4)
    assert set(frame["city"]) - set(CITIES)  # the test sends unseen cities
    outputs = send(drift_server, "shop_shift", frame)
    since = report(drift_server, "shop_shift")["since_load"]
    check_counts_and_psi(since, frame, outputs)
    assert sorted(since["drifted_features"]) == ["a", "city"]
    assert {r["name"] for r in since["features"][:2]} == {"a", "city"}  # the most significant first
    assert by_name(since)["a"]["wasserstein"] > 1.0  # +1.5 sd of a N(0, 1), in a's units
    city = by_name(since)["city"]
    assert city["unknown_rate"] == pytest.approx(city["live_counts"][-2] / 2000)
    assert city["unknown_rate"] > 0.3 and city["baseline_unknown_rate"] == 0.0


def test_the_psi_threshold_is_configurable_per_request(drift_server):
    """PSI is secondary now: the threshold marks psi_over_threshold, the tests flag."""
    send(drift_server, "shop_shift", shop_frame(200, seed=13))
    status, body = http_json(drift_server.http_url + "/v2/models/shop_shift/drift?psi_threshold=1000")
    assert status == 200 and body["psi_threshold"] == 1000
    assert not any(r["psi_over_threshold"] for r in body["since_load"]["features"])
    assert body["alpha"] == 0.05 and body["correction"].startswith("benjamini-hochberg")
    status, body = http_json(drift_server.http_url + "/v2/models/shop_shift/drift?psi_threshold=x")
    assert status == 400 and "psi_threshold" in body["error"]


def test_rejected_requests_leave_the_counts_unchanged(drift_server):
    before = report(drift_server, "shop_reject")["since_load"]
    assert before["rows"] == 0
    bad = shop_frame(10, seed=14)
    bad.loc[3, "b"] = np.inf
    client = triton.InferenceServerClient(drift_server.grpc_target)
    with pytest.raises(triton.InferenceServerException, match="infinite"):
        client.infer("shop_reject", triton_feature_inputs(bad))
    after = report(drift_server, "shop_reject")["since_load"]
    assert [r["live_counts"] for r in after["features"]] == [r["live_counts"] for r in before["features"]]
    assert after["rows"] == 0
    # good and bad requests at once: with the queue delay they share batches; only the good count
    good = [shop_frame(20, seed=100 + i) for i in range(12)]
    errors = []

    def one(i: int):
        frame = good[i // 2] if i % 2 == 0 else bad
        try:
            client.infer("shop_reject", triton_feature_inputs(frame), client_timeout=30)
        except triton.InferenceServerException as exc:
            errors.append(str(exc))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(24)))
    client.close()
    assert len(errors) == 12 and all("infinite" in e for e in errors)
    sent = __import__("pandas").concat(good, ignore_index=True)
    since = report(drift_server, "shop_reject")["since_load"]
    assert since["rows"] == 240
    rows = by_name(since)
    for name in ("a", "b", "c"):
        assert rows[name]["live_counts"] == expected_numeric(sent[name].to_numpy(float), np.array(rows[name]["edges"]))
    assert sum(rows["label"]["live_counts"]) == 240
    batches = scrape(drift_server, "onyxserve_batches", model="shop_reject")
    assert sum(batches.values()) < 13, "the good and bad requests were expected to share batches"


def scrape(server: ServerProcess, family: str, **match: str) -> dict[tuple, float]:
    """Samples of ``family`` (counter name without _total) whose labels include ``match``."""
    text = urllib_get(server.http_url + "/metrics")
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != family:
            continue
        for s in fam.samples:
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in match.items()):
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_prometheus_counters_carry_the_report_counts(drift_server):
    send(drift_server, "shop", shop_frame(300, seed=15))
    body = report(drift_server, "shop")
    samples = scrape(drift_server, "onyxserve_drift_feature_rows", model="shop", version="1")
    for r in body["since_load"]["features"]:
        got = [samples[tuple(sorted({"model": "shop", "version": "1", "feature": r["name"], "bin": b}.items()))]
               for b in r["bins"]]
        assert got == r["live_counts"], r["name"]
    assert {dict(k)["bin"] for k in samples if dict(k)["feature"] == "a"} >= {"below", "above", "missing"}
    preds = scrape(drift_server, "onyxserve_drift_prediction_rows", model="shop", version="1")
    labels = {dict(k)["bin"]: v for k, v in preds.items() if dict(k)["output"] == "label"}
    assert labels == dict(zip(("0", "1"), by_name(body["since_load"])["label"]["live_counts"]))
    proba = {dict(k)["bin"]: v for k, v in preds.items() if dict(k) | {} and dict(k)["output"] == "probability"
             and dict(k)["class"] == "1"}
    assert list(proba.values()) and sum(proba.values()) == body["since_load"]["rows"]
    assert "[0.9, 1]" in proba


def next_window(server: ServerProcess, model: str, after: int, timeout_s: float = 10.0) -> dict:
    """The report once a window after ``after`` is open (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = report(server, model)
        if body["current_window"]["index"] > after:
            return body
        time.sleep(0.1)
    raise AssertionError(f"no window after {after} opened within {timeout_s}s")


def test_the_windows_tumble_and_hold_only_their_rows(drift_server):
    """Windows of 3 s, checked every 0.5 s: the early rows are sent just after one opens, the
    late ones just after the next opens (so neither set straddles a boundary)."""
    start = next_window(drift_server, "shop_window", report(drift_server, "shop_window")["current_window"]["index"])
    early = shop_frame(300, seed=16)
    send(drift_server, "shop_window", early)
    next_window(drift_server, "shop_window", start["current_window"]["index"])
    late = shop_frame(200, seed=17, shift_a=1.5)
    send(drift_server, "shop_window", late)
    body = report(drift_server, "shop_window")
    assert body["since_load"]["rows"] == 500
    assert body["window_settings"] == {"seconds": 3, "rows": 0, "check_seconds": 0.5}
    closed = body["window"]
    # 3 s, closed by a check every 0.5 s (a loaded machine may run the check late)
    assert closed["closed"] and 3.0 <= closed["seconds"] <= 5.0 and closed["rows"] == 300
    assert closed["index"] == start["current_window"]["index"]
    assert closed["end_unix"] - closed["start_unix"] == pytest.approx(closed["seconds"], abs=1e-3)
    edges = np.array(by_name(body["since_load"])["a"]["edges"])  # bins and edges: since_load only
    assert "edges" not in by_name(closed)["a"] and "baseline_counts" not in by_name(closed)["a"]
    a = by_name(closed)["a"]
    assert a["live_counts"] == expected_numeric(early["a"].to_numpy(float), edges)
    current = body["current_window"]
    assert not current["closed"] and current["index"] > closed["index"] and current["rows"] == 200
    a = by_name(current)["a"]
    assert a["live_counts"] == expected_numeric(late["a"].to_numpy(float), edges)
    assert "a" in current["drifted_features"] and "a" not in closed["drifted_features"]
    assert body["windows"][-1]["index"] == closed["index"] and body["windows"][-1]["rows"] == 300


def test_drift_report_command_renders_html(drift_server, tmp_path):
    send(drift_server, "shop_shift", shop_frame(300, seed=18, shift_a=1.5, unseen_share=0.4))
    out = tmp_path / "drift.html"
    done = subprocess.run(
        [sys.executable, "-m", "onyxserve", "drift-report", "--url", drift_server.http_url, "shop_shift",
         "--html", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "DRIFTED" in done.stdout and "drifted since load: a, city" in done.stdout.replace("city, a", "a, city")
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "Drift: shop_shift version 1" in html
    assert html.count('<img alt="') == 4 + 3  # a feature plot each, then label and two probability plots
    assert "src=\"data:image/png;base64," in html and "http://" not in html.split("<body>")[1]
    # the table lists the most drifted first: a and city before b and c
    first_rows = [html.index(f"<td>{name}</td>") for name in ("a", "city", "b", "c")]
    assert max(first_rows[:2]) < min(first_rows[2:])
    missing = subprocess.run(
        [sys.executable, "-m", "onyxserve", "drift-report", "--url", drift_server.http_url, "nope"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert missing.returncode == 1 and "404" in missing.stderr and "nope" in missing.stderr


def test_string_labels_and_regression_values_are_counted(server, model_repo):
    """The session server's iris (string labels, three classes) and price (regression value)."""
    _, models = model_repo
    client = triton.InferenceServerClient(server.grpc_target)
    before = {m: by_name(report(server, m)["since_load"]) for m in ("iris", "price")}
    iris = models["iris"][1].iloc[:150]
    inp = triton.InferInput("input", [150, 4], "FP32")
    inp.set_data_from_numpy(iris.to_numpy(np.float32))
    labels = client.infer("iris", [inp]).as_numpy("label").astype(str)
    price = models["price"][1].iloc[:120]
    values = client.infer("price", triton_feature_inputs(price)).as_numpy("value")
    client.close()
    rows = by_name(report(server, "iris")["since_load"])
    classes = rows["label"]["bins"]
    assert classes == ["setosa", "versicolor", "virginica"]
    added = np.subtract(rows["label"]["live_counts"], before["iris"]["label"]["live_counts"])
    assert added.tolist() == [int((labels == c).sum()) for c in classes]
    rows = by_name(report(server, "price")["since_load"])
    value = rows["value"]
    added = np.subtract(value["live_counts"], before["price"]["value"]["live_counts"])
    assert added.tolist() == expected_numeric(values.astype(np.float64), np.array(value["edges"]))
    age = rows["age"]  # NaN rows are imputed for the model but counted as missing by drift
    added = np.subtract(age["live_counts"], before["price"]["age"]["live_counts"])
    assert added.tolist() == expected_numeric(price["age"].to_numpy(float), np.array(age["edges"]))
    assert added[-1] == price["age"].isna().sum() > 0
