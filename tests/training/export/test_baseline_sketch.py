"""The training-data drift baseline: one chunked pass with bounded memory (reservoirs), fine
quantile edges (a bin per value for discrete features), exact counts where they are cheap, the
same result whatever the chunking while the data fits the reservoir; export's warning on a
small sample; a datasource as the baseline data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.server.drift.plan import plan_drift
from onyxserve.training.export.baseline import (
    FINE_BINS,
    PROBABILITY_BINS,
    BaselineSketch,
    _Reservoir,
    compute_baseline,
    fine_edges,
)
from onyxserve.training.export.writer import export_model

from tests.server.drift.drift_models import shop_frame, shop_pipeline


def scores_of(estimator, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"label": estimator.predict(frame), "probabilities": estimator.predict_proba(frame)}


def without_means(x):
    if isinstance(x, dict):
        return {k: without_means(v) for k, v in x.items() if k != "mean"}
    return x


def test_fine_edges_give_a_bin_per_value_to_discrete_features():
    binary = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    edges = fine_edges(binary)
    assert edges[:2].tolist() == [0.0, 1.0] and len(edges) == 3 and edges[2] > 1.0
    assert np.histogram(binary, edges)[0].tolist() == [2, 3]  # 0s and 1s apart
    x = np.random.default_rng(0).normal(size=50_000)
    edges = fine_edges(x)
    assert len(edges) == FINE_BINS + 1 and edges[0] == x.min() and edges[-1] == x.max()
    counts = np.histogram(x, edges)[0]
    assert counts.min() >= 99 and counts.max() <= 101  # quantile bins: 100 values each


def test_reservoir_is_bounded_uniform_and_exact_in_its_totals():
    rng = np.random.default_rng(1)
    res = _Reservoir(5_000, np.random.default_rng(2))
    chunks = [rng.exponential(size=7_000) for _ in range(20)]  # 140,000 values
    chunks[3][:500] = np.nan
    for c in chunks:
        res.add(c)
    everything = np.concatenate(chunks)
    assert res.values.nbytes == 5_000 * 8 and len(res.sample()) == 5_000
    s = res.summary(200)
    assert s["count"] == 140_000 and s["missing_rate"] == pytest.approx(500 / 140_000)
    assert s["min"] == np.nanmin(everything) and s["max"] == np.nanmax(everything)
    assert s["mean"] == pytest.approx(np.nanmean(everything), rel=1e-12)
    assert s["histogram_rows"] == 5_000 and sum(s["counts"]) + s["missing_count"] == 5_000
    # a uniform sample: its quantiles are the data's (to sampling error of 5,000 values), and the
    # later chunks are in it as much as the first ones
    np.testing.assert_allclose(np.quantile(res.sample()[np.isfinite(res.sample())], [0.1, 0.5, 0.9]),
                               np.nanquantile(everything, [0.1, 0.5, 0.9]), rtol=0.06)
    first, last = np.isin(res.sample(), chunks[0]).sum(), np.isin(res.sample(), chunks[-1]).sum()
    assert 150 < first < 350 and 150 < last < 350  # 250 expected from each chunk


def test_the_sketch_is_exact_and_chunk_independent_within_the_reservoir(tmp_path):
    estimator, _ = shop_pipeline()
    frame = shop_frame(12_000, seed=5)
    manifest = export_model(estimator, name="x", repository=tmp_path, sample=frame.iloc[:200], register=False).manifest
    whole, parts = BaselineSketch(manifest), BaselineSketch(manifest)
    whole.add(frame, scores_of(estimator, frame))
    for i in range(0, len(frame), 2_500):
        part = frame.iloc[i : i + 2_500]
        parts.add(part, scores_of(estimator, part))
    a, b = whole.result(), parts.result()
    assert without_means(a) == without_means(b)  # means: sums in another order, to the last bit
    assert a["features"]["a"]["mean"] == pytest.approx(b["features"]["a"]["mean"], rel=1e-12)
    assert a["rows"] == 12_000 and a["source"] == "training data"
    c = a["features"]["c"]
    finite = frame["c"].dropna().to_numpy()
    assert c["histogram_rows"] == 12_000 and c["missing_count"] == int(frame["c"].isna().sum())
    assert c["counts"] == np.histogram(finite, np.array(c["edges"]))[0].tolist()
    assert len(c["edges"]) == FINE_BINS + 1
    city = a["features"]["city"]
    assert city["counts"] == {k: int((frame["city"] == k).sum()) for k in city["counts"]}
    p1 = a["predictions"]["probabilities"]["1"]["counts"]
    assert len(p1) == PROBABILITY_BINS and sum(p1) == 12_000
    # the plan reads it: fine bins, the baseline's size = the histogram's rows
    for s in plan_drift(__import__("dataclasses").replace(manifest, baseline=a)).features:
        assert sum(s.baseline) == 12_000
        assert len(s.bins) == (FINE_BINS + 3 if s.type != "categorical" else 4 + 2)  # cities, unknown, missing


def test_export_with_training_data_and_the_small_sample_warning(tmp_path):
    estimator, _ = shop_pipeline()
    train = shop_frame(30_000, seed=6)
    small = export_model(estimator, name="small", repository=tmp_path, sample=train.iloc[:500], register=False)
    assert any(w.startswith("the drift baseline is the 500-row sample") for w in small.warnings)
    assert small.manifest.baseline["rows"] == 500 and "source" not in small.manifest.baseline
    big = export_model(estimator, name="big", repository=tmp_path, sample=train.iloc[:500], register=False,
                       baseline_data=(train.iloc[i : i + 7_000] for i in range(0, 30_000, 7_000)))
    assert not any(w.startswith("the drift baseline") for w in big.warnings)
    base = big.manifest.baseline
    assert base["rows"] == 30_000 and base["fine_bins"] == FINE_BINS
    assert base["features"]["a"]["count"] == 30_000 and len(base["features"]["a"]["edges"]) == FINE_BINS + 1
    # the sample summary of older exports is still what an export without baseline data writes
    assert small.manifest.baseline == {**compute_baseline(small.manifest, train.iloc[:500],
                                                         scores_of(estimator, train.iloc[:500]))}


def test_a_datasource_as_the_baseline_data(tmp_path):
    from onyxserve.training.datasource.record import create_datasource, read_frames

    estimator, _ = shop_pipeline()
    train = shop_frame(6_000, seed=8)
    path = tmp_path / "train.csv"
    train.to_csv(path, index=False)
    ds = create_datasource(str(path))
    result = export_model(estimator, name="ds", repository=tmp_path / "repo", sample=train.iloc[:300],
                          register=False, baseline_data=read_frames(ds, chunk_rows=1_000))
    base = result.manifest.baseline
    assert base["rows"] == 6_000
    assert base["features"]["c"]["missing_count"] == int(train["c"].isna().sum())
    assert base["features"]["city"]["counts"]["paris"] == int((train["city"] == "paris").sum())
