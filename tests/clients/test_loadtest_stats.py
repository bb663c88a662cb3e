"""The harness's statistics: nearest-rank percentiles and exact merging across processes."""

from __future__ import annotations

import math
from array import array

import numpy as np
import pytest
from onyxserve.clients.loadtest.stats import (
    LoadResult,
    WorkerResult,
    format_table,
    merge,
    merge_errors,
    merge_samples,
    percentiles,
)


def _ns(ms_values) -> np.ndarray:
    return (np.asarray(ms_values, dtype=np.float64) * 1e6).astype(np.int64)


def test_nearest_rank_on_1_to_100():
    p = percentiles(_ns(range(1, 101)))
    assert p["p50"] == 50.0
    assert p["p90"] == 90.0
    assert p["p95"] == 95.0
    assert p["p99"] == 99.0
    assert p["p99.9"] == 100.0  # ceil(0.999 * 100) = 100th sample
    assert p["min"] == 1.0 and p["max"] == 100.0
    assert p["mean"] == pytest.approx(50.5)


def test_percentiles_are_order_independent_and_match_inverted_cdf():
    rng = np.random.default_rng(3)
    samples = rng.integers(10_000, 50_000_000, 12_345)
    p = percentiles(samples)
    shuffled = percentiles(rng.permutation(samples))
    assert p == shuffled
    for q in (50, 90, 95, 99, 99.9):
        expected = np.percentile(samples, q, method="inverted_cdf") / 1e6
        assert p[f"p{q:g}"] == pytest.approx(expected, abs=1e-9)


def test_single_sample_and_empty():
    p = percentiles(_ns([7.5]))
    assert all(p[k] == 7.5 for k in ("p50", "p99.9", "min", "max", "mean"))
    empty = percentiles(np.empty(0, dtype=np.int64))
    assert all(math.isnan(v) for v in empty.values())


def _worker(samples: np.ndarray, errors=None, **kw) -> WorkerResult:
    return WorkerResult(latencies_ns=array("q", samples.tolist()).tobytes(), errors=errors or {}, **kw)


def test_merge_is_exact_over_processes():
    rng = np.random.default_rng(11)
    all_samples = rng.lognormal(13, 0.6, 30_000).astype(np.int64)
    cuts = np.sort(rng.choice(np.arange(1, all_samples.size), 2, replace=False))
    parts = [
        _worker(chunk, errors=e, warmup_ok=5)
        for chunk, e in zip(
            np.split(all_samples, cuts),
            [{"UNAVAILABLE": 2}, {}, {"UNAVAILABLE": 1, "DEADLINE_EXCEEDED": 4}],
        )
    ]
    r = merge(parts, mode="closed", duration_s=3.0, concurrency=8, rows_per_request=4)
    assert r.latency_ms == percentiles(all_samples)
    assert r.requests == all_samples.size
    assert r.throughput_rps == pytest.approx(all_samples.size / 3.0)
    assert r.rows_per_s == pytest.approx(4 * all_samples.size / 3.0)
    assert r.errors == {"DEADLINE_EXCEEDED": 4, "UNAVAILABLE": 3}
    assert r.error_count == 7
    assert r.warmup_requests == 15
    assert r.aborted is None and r.send_lag_ms is None


def test_merge_of_an_aborted_window_rates_over_the_time_covered():
    parts = [
        _worker(_ns([1.0] * 100), wall_s=10.0),
        _worker(_ns([2.0] * 100), aborted="server unavailable for over 1 s (x)", wall_s=2.0),
    ]
    r = merge(parts, mode="open", duration_s=10.0, rate=100.0, arrival="poisson", rows_per_request=1)
    assert r.aborted.startswith("server unavailable")
    assert r.duration_s == 2.0
    assert r.throughput_rps == pytest.approx(100.0)
    assert r.send_lag_ms is not None  # open loop reports the client's lateness (none here: NaN)


def test_merge_helpers_and_json_form():
    assert merge_samples([]).size == 0
    assert merge_samples([b"", array("q", [3, 4]).tobytes()]).tolist() == [3, 4]
    assert merge_errors([{"A": 1}, {"B": 2, "A": 1}]) == {"A": 2, "B": 2}
    r = merge([WorkerResult()], mode="closed", duration_s=1.0, concurrency=1, rows_per_request=1)
    data = r.to_dict()
    assert data["latency_ms"]["p99"] is None  # NaN is written as null in JSON
    assert data["requests"] == 0


def test_table_has_one_line_per_window():
    rows = [
        LoadResult(
            "closed",
            4,
            None,
            None,
            5.0,
            1000,
            {"UNAVAILABLE": 3},
            200.0,
            1,
            200.0,
            percentiles(_ns(range(1, 11))),
        ),
        LoadResult("open", None, 500.0, "poisson", 5.0, 2500, {}, 500.0, 1, 500.0, percentiles(_ns([2.0]))),
    ]
    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 3
    assert "c=4" in lines[1] and "UNAVAILABLE:3" in lines[1]
    assert "500/s poisson" in lines[2]


def test_harness_cpu_is_reported_per_request_and_in_cores():
    parts = [
        WorkerResult(cpu_s=0.5, cpu_wall_s=2.0, calls=1000),
        WorkerResult(cpu_s=0.3, cpu_wall_s=2.0, calls=1000),
        WorkerResult(cpu_s=0.0001, cpu_wall_s=0.0001, calls=0),  # a process with nothing to do
    ]
    r = merge(parts, mode="closed", duration_s=1.0, concurrency=2, rows_per_request=1)
    assert r.client_cpu_us_per_request == pytest.approx(0.8001 / 2000 * 1e6)
    assert r.client_cpu_cores == pytest.approx(0.8001 / 2.0)
