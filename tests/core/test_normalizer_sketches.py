"""Drift sketches updated in the gather pass: counts as numpy computes them."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.core.normalizer import FeatureNormalizer, FeatureValueError, RowBlock
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CategoricalSpec, FeatureSpec, NumericSpec

EDGES = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
FEATURES = [
    FeatureSpec("x", "numeric", 0, numeric=NumericSpec(impute=0.0, offset=3.0, scale=0.5)),
    FeatureSpec("y", "numeric", 1, numeric=NumericSpec(allow_nan=True)),
    FeatureSpec("unsketched", "numeric", 2),
    FeatureSpec("c", "categorical", 3, categorical=CategoricalSpec(("a", "b", "c"), unknown="ignore")),
]


def expected_numeric(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Below, numpy.histogram's bins, above, NaN."""
    finite = x[~np.isnan(x)]
    inner = np.histogram(finite, edges)[0]
    return np.array([(finite < edges[0]).sum(), *inner, (finite > edges[-1]).sum(), np.isnan(x).sum()])


def blocks(rng: np.random.Generator, sizes=(1, 7, 1, 300)) -> list[RowBlock]:
    out = []
    for n in sizes:
        x = rng.normal(0, 1.5, n)
        x[::5] = rng.choice(EDGES, len(x[::5]))  # exactly on an edge
        x[rng.random(n) < 0.1] = np.nan
        y = np.round(rng.normal(0, 10, n)).astype(np.float32)  # integers hit the edges often
        y[rng.random(n) < 0.2] = np.nan
        cats = rng.choice(["a", "b", "c", "", "zz"], n).tolist()
        out.append(RowBlock(n, columns=[x, y, np.ones(n), v2bytes.encode(cats)]))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_counts_match_numpy(seed):
    rng = np.random.default_rng(seed)
    y_edges = np.arange(-10.0, 11.0, 2.0)
    norm = FeatureNormalizer(FEATURES, 6, {"x": EDGES, "y": y_edges, "c": None})
    assert set(norm.sketch_counts) == {"x", "y", "c"}
    bs = blocks(rng)
    norm.gather(bs[:2])
    norm.gather(bs[2:])
    x = np.concatenate([b.columns[0] for b in bs])
    y = np.concatenate([b.columns[1] for b in bs]).astype(np.float64)
    cats = [v.decode() for b in bs for v in v2bytes.decode(b.columns[3])]
    np.testing.assert_array_equal(norm.sketch_counts["x"], expected_numeric(x, EDGES))
    np.testing.assert_array_equal(norm.sketch_counts["y"], expected_numeric(y, y_edges))
    # one slot per category, then unknown, then missing (""): the raw value is watched
    assert norm.sketch_counts["c"].tolist() == [cats.count("a"), cats.count("b"), cats.count("c"),
                                                cats.count("zz"), cats.count("")]
    assert cats.count("zz") and cats.count("")  # both slots are exercised
    norm.reset_sketches()
    assert all(not c.any() for c in norm.sketch_counts.values())


def test_matrix_form_sketch_and_edge_values():
    features = [FeatureSpec("a", "numeric", 0), FeatureSpec("b", "numeric", 1)]
    norm = FeatureNormalizer(features, 2, {"b": np.array([0.0, 1.0, 2.0])})
    m = np.array([[0, -1], [0, 0], [0, 1], [0, 2], [0, 3], [0, 1.5]], dtype=np.float32)
    norm.gather([RowBlock(6, matrix=m)])
    # below | [0,1) | [1,2] (closed, like numpy.histogram) | above | NaN
    assert norm.sketch_counts["b"].tolist() == [1, 1, 3, 1, 0]


def test_rejected_batch_leaves_counts_unchanged():
    norm = FeatureNormalizer(FEATURES, 6, {"x": EDGES, "c": None})
    good = blocks(np.random.default_rng(1), (5,))
    norm.gather(good)
    before = {k: v.copy() for k, v in norm.sketch_counts.items()}
    bad = RowBlock(2, columns=[np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([1.0, np.inf]),
                               v2bytes.encode(["a", "b"])])
    with pytest.raises(FeatureValueError, match="unsketched"):
        norm.gather(good + [bad])
    for k, v in norm.sketch_counts.items():
        np.testing.assert_array_equal(v, before[k])


def test_no_sketches_by_default():
    assert FeatureNormalizer(FEATURES, 6).sketch_counts == {}
