"""The shadow's pieces on their own: bulk histogram observation, report quantiles, and how
outputs of two versions line up (multiclass columns by label, regression differences)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onyxserve.repository.manifest import Manifest
from onyxserve.server.metrics import PROBABILITY_DIFF_BUCKETS, VALUE_DIFF_BUCKETS, observe_many
from onyxserve.server.shadow.compare import CompareError, Comparer
from onyxserve.server.shadow.stats import log_bins, probability_bins
from prometheus_client import CollectorRegistry, Histogram


def _samples(registry: CollectorRegistry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples if not s.name.endswith("_created")}


@pytest.mark.parametrize("buckets", [PROBABILITY_DIFF_BUCKETS, VALUE_DIFF_BUCKETS])
def test_observe_many_equals_one_observe_per_value(buckets):
    rng = np.random.default_rng(0)
    # edge values land exactly on bucket bounds too (observe uses v <= bound)
    values = np.concatenate([rng.exponential(0.05, 500), np.array(buckets[:5]), [0.0, 0.0, 2.0e7]])
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("d", "x", ["k"], buckets=buckets, registry=one).labels("a")
    h2 = Histogram("d", "x", ["k"], buckets=buckets, registry=many).labels("a")
    for v in values:
        h1.observe(float(v))
    observe_many(h2, values[:100])
    observe_many(h2, values[100:])
    a, b = _samples(one), _samples(many)
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-12), key


def test_report_quantiles_follow_the_data_within_a_bin():
    rng = np.random.default_rng(1)
    dp = rng.beta(0.5, 8, 20_000)
    bins = probability_bins()
    bins.add(dp[:7000])
    bins.add(dp[7000:])
    s = bins.summary(with_histogram=True)
    assert s["count"] == len(dp) and s["mean"] == pytest.approx(dp.mean()) and s["max"] == dp.max()
    for q in (0.5, 0.9, 0.99):
        assert s[f"p{round(q * 100)}"] == pytest.approx(np.quantile(dp, q), abs=1e-3)
    assert sum(b[2] for b in s["histogram"]) == len(dp)

    values = rng.lognormal(2, 3, 5000)
    wide = log_bins(1e-9, 1e9)
    wide.add(values)
    for q in (0.5, 0.9):  # 20 bins per decade: within 12 % of the value
        assert wide.quantile(q) == pytest.approx(np.quantile(values, q), rel=0.12)
    zeros = probability_bins()
    zeros.add(np.zeros(10))
    assert zeros.summary()["p99"] == 0.0 and zeros.summary()["max"] == 0.0
    assert probability_bins().summary()["p50"] is None


def test_multiclass_columns_are_matched_by_label(model_repo):
    root, _ = model_repo
    iris = Manifest.load(root / "iris" / "1" / "manifest.json")
    labels = list(iris.labels)
    shuffled = dataclasses.replace(iris, labels=(labels[2], labels[0], labels[1]))
    production = {"label": np.array([labels[0], labels[1]], dtype=object),
                  "probabilities": np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], dtype=np.float32)}
    # the shadow's columns are in its own label order: [labels[2], labels[0], labels[1]]
    shadow = {"label": np.array([labels[0], labels[2]], dtype=object),
              "probabilities": np.array([[0.1, 0.5, 0.4], [0.5, 0.1, 0.4]], dtype=np.float32)}
    diffs = Comparer(iris, shuffled).compare(production, shadow)
    assert diffs.agree.tolist() == [True, False]
    # production's top class: labels[0] (0.7 vs shadow 0.5), labels[1] (0.6 vs shadow 0.4)
    np.testing.assert_allclose(diffs.probability_diff, [0.2, 0.2], atol=1e-6)


def test_regression_differences_and_task_mismatch(model_repo):
    root, _ = model_repo
    price = Manifest.load(root / "price" / "1" / "manifest.json")
    fraud = Manifest.load(root / "fraud" / "1" / "manifest.json")
    diffs = Comparer(price, price).compare(
        {"value": np.array([100.0, 0.0, -2.0, 0.0], np.float32)},
        {"value": np.array([110.0, 5.0, 2.0, 0.0], np.float32)},
    )
    np.testing.assert_allclose(diffs.value_diff, [10.0, 5.0, 4.0, 0.0])
    np.testing.assert_allclose(diffs.relative_diff, [10 / 110, 1.0, 2.0, 0.0])
    with pytest.raises(CompareError, match="production is a regression model, shadow a binary model"):
        Comparer(price, fraud)
