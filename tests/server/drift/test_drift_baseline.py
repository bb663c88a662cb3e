"""A version exported with a training-data baseline (30,000 rows, 500 quantile bins), served:
a stationary 5,000-row stream flags nothing, a +0.25 sd shift of one feature flags exactly it;
/metrics sums the fine bins into a dozen counters per feature; unseen categories and missing
values are separate bins."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.training.export.baseline import FINE_BINS
from prometheus_client.parser import text_string_to_metric_families

from tests.server.drift.drift_models import build_shop_repository, expected_numeric, http_json, shop_frame
from tests.server.drift.test_drift import check_tests, urllib_get
from tests.serving import ServerProcess, triton_feature_inputs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-baseline") / "models"
    build_shop_repository(root, ["calm", "moved"], {"max_batch_size": 1000}, baseline_rows=30_000)
    gaps = shop_frame(30_000, seed=98)
    gaps.loc[np.random.default_rng(3).uniform(size=len(gaps)) < 0.1, "city"] = ""  # 10% missing cities
    build_shop_repository(root, ["gaps"], {"max_batch_size": 1000}, baseline_data=gaps)
    with ServerProcess(root, args=["--model-control", "none"]) as s:
        yield s


def send(server: ServerProcess, model: str, frame) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    for start in range(0, len(frame), 500):
        client.infer(model, triton_feature_inputs(frame.iloc[start : start + 500]), client_timeout=30)
    client.close()


def since_load(server: ServerProcess, model: str) -> dict:
    status, body = http_json(f"{server.http_url}/v2/models/{model}/drift")
    assert status == 200, body
    assert body["baseline_rows"] == 30_000
    return body["since_load"]


def test_stationary_rows_flag_nothing_and_a_small_shift_flags_its_feature(server):
    calm = shop_frame(5_000, seed=31)
    send(server, "calm", calm)
    view = since_load(server, "calm")
    check_tests(view)
    assert view["drifted_features"] == [] and view["drifted_predictions"] == []
    a = next(r for r in view["features"] if r["name"] == "a")
    assert len(a["edges"]) == FINE_BINS + 1 and len(a["bins"]) == FINE_BINS + 3
    assert sum(a["baseline_counts"]) == 30_000
    assert a["live_counts"] == expected_numeric(calm["a"].to_numpy(float), np.array(a["edges"]))

    send(server, "moved", shop_frame(5_000, seed=32, shift_a=0.25))
    view = since_load(server, "moved")
    check_tests(view)
    assert view["drifted_features"] == ["a"]
    a = view["features"][0]
    assert a["name"] == "a" and a["p_value"] < 1e-10 and 0.15 < a["wasserstein"] < 0.35


def test_metrics_sum_the_fine_bins_into_runs(server):
    view = since_load(server, "calm")
    a = next(r for r in view["features"] if r["name"] == "a")
    samples = {}
    for fam in text_string_to_metric_families(urllib_get(server.http_url + "/metrics")):
        if fam.name == "onyxserve_drift_feature_rows":
            for s in fam.samples:
                if s.labels["model"] == "calm" and s.labels["feature"] == "a" and s.name.endswith("_total"):
                    samples[s.labels["bin"]] = s.value
    assert len(samples) == 10 + 3 and {"below", "above", "missing"} <= set(samples)
    assert sum(samples.values()) == a["rows"] == 5_000
    inner = a["live_counts"][1:-2]
    runs = np.linspace(0, FINE_BINS, 11).round().astype(int)
    got = [v for k, v in samples.items() if k.startswith("[")]
    assert sorted(got) == sorted(sum(inner[runs[g] : runs[g + 1]]) for g in range(10))


def test_unseen_categories_and_missing_values_are_separate_bins(server):
    """Training had 10% missing cities; live has 10% never-seen cities and none missing: the
    share outside the categories is the same (one shared bin would not move), the bins are not."""
    live = shop_frame(2_000, seed=33, unseen_share=0.1)
    send(server, "gaps", live)
    view = since_load(server, "gaps")
    check_tests(view)
    city = next(r for r in view["features"] if r["name"] == "city")
    assert city["bins"][-2:] == ["unknown", "missing"]
    unseen = int((~live["city"].isin(["paris", "oslo", "lima", "quito"])).sum())
    assert city["live_counts"][-2:] == [unseen, 0]
    assert city["baseline_missing_rate"] == pytest.approx(0.1, abs=0.01) and city["baseline_unknown_rate"] == 0
    outside = city["unknown_rate"] + city["missing_rate"]
    assert outside == pytest.approx(city["baseline_unknown_rate"] + city["baseline_missing_rate"], abs=0.02)
    assert "city" in view["drifted_features"] and city["p_value"] < 1e-10
    # /metrics carries both bins
    text = urllib_get(server.http_url + "/metrics")
    assert 'feature="city"' in text and 'bin="missing"' in text and 'bin="unknown"' in text
