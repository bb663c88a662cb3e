"""The drift tests equal scipy's on the same data: ks_2samp on the binned values (and within the
stated bound of ks_2samp on the raw ones), chi2_contingency, jensenshannon,
wasserstein_distance, false_discovery_control; and kstwo_sf equals kstwo.sf within its bound."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.server.drift.plan import numeric_slots
from onyxserve.server.drift.statistics import (
    CHI2,
    KS,
    DriftTests,
    SeriesBins,
    benjamini_hochberg,
    kstwo_sf,
    numeric_points,
    pool_cells,
)
from scipy import special
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, false_discovery_control, ks_2samp, kstwo, wasserstein_distance


def fine_edges(x: np.ndarray, bins: int = 500) -> np.ndarray:
    return np.unique(np.quantile(x[np.isfinite(x)], np.linspace(0, 1, bins + 1)))


def slot_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(numeric_slots(x, edges), minlength=len(edges) + 2)


def numeric_case(seed: int, n: int, m: int, shift: float = 0.0, missing: float = 0.0, bins: int = 500):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=m)
    live = rng.normal(size=n) + shift
    live[rng.uniform(size=n) < missing] = np.nan
    base[rng.uniform(size=m) < 0.02] = np.nan
    edges = fine_edges(base, bins)
    return base, live, edges


def run_one(live_counts: np.ndarray, base_counts: np.ndarray, test: str, points=()):
    tests = DriftTests([SeriesBins(0, base_counts.tolist(), test, points)])
    return tests.run(live_counts)


@pytest.mark.parametrize(("n", "m", "shift", "missing"), [
    (500, 20000, 0.0, 0.0), (500, 20000, 0.25, 0.0), (5000, 20000, 0.1, 0.0), (5000, 20000, 0.0, 0.1),
    (300, 3000, 0.5, 0.02), (2000, 200000, 0.05, 0.0),
])
def test_ks_equals_scipy_on_the_binned_values_and_bounds_the_raw_one(n, m, shift, missing):
    base, live, edges = numeric_case(n + m, n, m, shift, missing)
    lc, bc = slot_counts(live, edges), slot_counts(base, edges)
    r = run_one(lc, bc, KS, numeric_points(edges))
    # every value replaced by its slot (missing sorts last): the data the binned statistic sees
    ref = ks_2samp(numeric_slots(live, edges), numeric_slots(base, edges), method="asymp")
    assert r.statistic[0] == ref.statistic
    assert r.p_value[0] == pytest.approx(ref.pvalue, rel=1e-3, abs=1e-6)
    assert r.test == [KS] and r.rows[0] == n
    # against the raw values (missing as +inf): within the largest bin share of either sample
    raw = ks_2samp(np.nan_to_num(live, nan=np.inf), np.nan_to_num(base, nan=np.inf), method="asymp")
    bound = max((lc / lc.sum()).max(), (bc / bc.sum()).max())
    assert r.statistic[0] <= raw.statistic + 1e-12 <= r.statistic[0] + bound + 1e-12


def test_ks_power_and_level_match_scipy_on_raw_data():
    """Same decisions as ks_2samp on the raw values at p < 0.01 in nearly every window."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=20000)
    edges = fine_edges(base)
    bc = slot_counts(base, edges)
    agree = 0
    for k in range(60):
        live = rng.normal(size=500) + (0.0, 0.1, 0.25)[k % 3]
        ours = run_one(slot_counts(live, edges), bc, KS).p_value[0] < 0.01
        agree += ours == (ks_2samp(live, base).pvalue < 0.01)
    assert agree >= 57


def test_kstwo_sf_equals_scipy_within_its_bound():
    rng = np.random.default_rng(3)
    n = np.repeat([1, 7, 60, 140, 141, 500, 2000, 20000, 150000], 25).astype(float)
    z = rng.uniform(0.05, 4.5, len(n))  # sqrt(n) d: p from ~1 down to ~1e-17
    d = np.minimum(z / np.sqrt(n), 0.999)
    d[::10] = 1.0 / n[::10]
    got, ref = kstwo_sf(d, n), kstwo.sf(d, n)
    np.testing.assert_allclose(got, ref, rtol=0, atol=5e-6)
    big = ref >= 1e-4
    np.testing.assert_allclose(got[big], ref[big], rtol=1e-3)
    # scipy's own Pelz-Good region (not Smirnov's formula, not Durbin's matrix): the same terms
    pelz = (n > 140) & (n * d > 1) & (n * d * d < 2.2) & ~((n <= 100000) & (n * d**1.5 <= 1.4))
    np.testing.assert_allclose(got[pelz], ref[pelz], rtol=1e-12)
    assert kstwo_sf(np.array([0.0, 1.0, 1.5]), np.array([500.0, 500.0, 500.0])).tolist() == [1.0, 0.0, 0.0]


def test_chi2_equals_chi2_contingency_without_pooling():
    live = np.array([400, 310, 190, 100, 0])
    base = np.array([8000, 6000, 4100, 1900, 0])  # the last cell is empty in both: dropped
    r = run_one(live, base, CHI2)
    ref = chi2_contingency(np.array([live[:4], base[:4]]), correction=False)
    assert r.statistic[0] == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value[0] == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.dof[0] == ref.dof == 3
    # a 2 x 2 table (dof 1): no Yates correction either
    two = run_one(np.array([270, 230]), np.array([10000, 10000]), CHI2)
    ref2 = chi2_contingency(np.array([[270, 230], [10000, 10000]]), correction=False)
    assert two.p_value[0] == pytest.approx(ref2.pvalue, rel=1e-10) and two.dof[0] == 1


def test_cochran_pooling_then_chi2_contingency():
    # live 500 rows: "d" expects 500 * 30/20530 < 5: pooled with "unknown" (baseline 0); the pool
    # still expects < 5, so it joins the smallest kept cell ("c")
    live = np.array([200, 150, 98, 2, 50])
    base = np.array([8000, 6000, 5970, 30, 0])
    L, B = pool_cells(live[None, :], base[None, :])
    assert L[0].tolist() == [200, 150, 150, 0, 0, 0] and B[0].tolist() == [8000, 6000, 6000, 0, 0, 0]
    r = run_one(live, base, CHI2)
    ref = chi2_contingency(np.array([[200, 150, 150], [8000, 6000, 6000]]), correction=False)
    assert r.statistic[0] == pytest.approx(ref.statistic, rel=1e-12) and r.dof[0] == 2
    # rare cells whose pool expects >= 5 stay one cell of their own
    live2 = np.array([300, 150, 3, 3, 44])
    base2 = np.array([9000, 9000, 100, 100, 0])
    L2, B2 = pool_cells(live2[None, :], base2[None, :])
    assert L2[0].tolist() == [300, 150, 0, 0, 0, 50] and B2[0].tolist() == [9000, 9000, 0, 0, 0, 200]
    r2 = run_one(live2, base2, CHI2)
    ref2 = chi2_contingency(np.array([[300, 150, 50], [9000, 9000, 200]]), correction=False)
    assert r2.statistic[0] == pytest.approx(ref2.statistic, rel=1e-12) and r2.dof[0] == 2
    # one row in a category never seen in training does not flag; 10% unseen does (pooled into
    # "c" at 455 rows, since 50 of 18,455 pooled rows expect 1.2 live ones: weaker, still clear)
    quiet = run_one(np.array([200, 150, 99, 1]), np.array([8000, 6000, 4000, 0]), CHI2)
    loud = run_one(np.array([180, 135, 90, 50]), np.array([8000, 6000, 4000, 0]), CHI2)
    assert quiet.p_value[0] > 0.5 and loud.p_value[0] < 1e-3


def test_effect_sizes_equal_scipy():
    base, live, edges = numeric_case(5, 800, 10000, shift=0.3, missing=0.05, bins=200)
    lc, bc = slot_counts(live, edges), slot_counts(base, edges)
    points = numeric_points(edges)
    r = run_one(lc, bc, KS, points)
    assert r.js_distance[0] == pytest.approx(jensenshannon(lc, bc, base=2), rel=1e-9)
    finite = np.isfinite(points)
    ref = wasserstein_distance(np.array(points)[finite], np.array(points)[finite], lc[finite], bc[finite])
    assert r.wasserstein[0] == pytest.approx(ref, rel=1e-9)
    assert 0.2 < r.wasserstein[0] < 0.4  # a location shift of 0.3 in the feature's units
    cat = run_one(np.array([5, 3, 2]), np.array([50, 20, 30]), CHI2)
    assert cat.js_distance[0] == pytest.approx(jensenshannon([5, 3, 2], [50, 20, 30], base=2), rel=1e-9)
    assert np.isnan(cat.wasserstein[0])


def test_benjamini_hochberg_equals_scipy_and_flags_by_it():
    p = np.array([0.001, 0.2, 0.013, 0.04, 0.011, 0.9, 0.0001, 0.03])
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p, method="bh"), rtol=1e-12)
    with_nan = benjamini_hochberg(np.array([0.01, np.nan, 0.02]))
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]].tolist() == pytest.approx([0.02, 0.02])
    # a version's series: the flag is q <= alpha among the series with enough rows
    rng = np.random.default_rng(1)
    base = rng.normal(size=(3, 20000))
    series, counts, offset = [], [], 0
    edges = [fine_edges(b) for b in base]
    for j in range(3):
        live = rng.normal(size=1000) + (0.3 if j == 0 else 0.0)
        c = slot_counts(live, edges[j])
        series.append(SeriesBins(offset, slot_counts(base[j], edges[j]).tolist(), KS, numeric_points(edges[j])))
        counts.append(c)
        offset += len(c)
    tests = DriftTests(series, alpha=0.05)
    r = tests.run(np.concatenate(counts))
    np.testing.assert_allclose(r.q_value, false_discovery_control(r.p_value, method="bh"), rtol=1e-12)
    assert r.drifted.tolist() == (r.q_value <= 0.05).tolist() and r.drifted[0]


def test_minimum_rows_are_derived_from_the_tests():
    tests = DriftTests([SeriesBins(0, [0, 100, 100, 0, 0], KS, [0, 0.5, 1.5, 2, np.nan]),
                        SeriesBins(5, [700, 250, 50], CHI2)], alpha=0.05)
    en = special.kolmogi(0.05 / 2) ** 2  # D = 1 flaggable at alpha / k (k = 2 series)
    assert tests.min_rows[0] == int(np.ceil(en * 200 / (200 - en)))
    assert tests.min_rows[1] == 20  # Cochran: 5 / 0.25, the second-largest share
    r = tests.run(np.array([0, 2, 0, 0, 0, 1, 1, 1]))  # fewer rows than either minimum
    assert not r.drifted.any() and np.isnan(r.q_value).all()
    empty = tests.run(np.zeros(8, dtype=np.int64))
    assert empty.rows.tolist() == [0, 0] and np.isnan(empty.p_value).all() and np.isnan(empty.statistic).all()
