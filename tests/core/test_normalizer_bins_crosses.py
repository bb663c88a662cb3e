"""Binned numeric features and crosses: the compiled kernel against the reference and against
scikit-learn's own KBinsDiscretizer; errors that name the parent feature; drift sketches."""

from __future__ import annotations

import struct
import warnings
from dataclasses import replace

import numpy as np
import pytest
from onyxserve.core.normalizer import FeatureNormalizer, FeatureValueError, RowBlock
from onyxserve.core.reference import normalize_reference
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CategoricalSpec, CrossSpec, FeatureSpec, NumericSpec
from sklearn.preprocessing import KBinsDiscretizer

from tests.core.normalizer_cases import binned_spec, binned_values, cross_block, cross_features

SIZES = [1, 0, 3, 1, 17, 64]


def check(features, width, blocks, crosses=()):
    expected = normalize_reference(features, width, blocks, crosses)
    got = FeatureNormalizer(features, width, crosses=crosses).gather(blocks)
    np.testing.assert_array_equal(got, expected)
    return got


def binned_features(rng, n):
    specs = [binned_spec(rng) if rng.random() < 0.6 else NumericSpec(offset=1.0) for _ in range(n)]
    starts = np.concatenate([[0], np.cumsum([s.width for s in specs])[:-1]])
    return [FeatureSpec(f"f{j}", "numeric", int(starts[j]), numeric=s) for j, s in enumerate(specs)], sum(
        s.width for s in specs
    )


def binned_block(rng, features, n, form, dtype=np.float64):
    cols = [binned_values(rng, f.numeric, n) if f.numeric.bins is not None else rng.normal(0, 3, n) for f in features]
    if form == "matrix":
        return RowBlock(n, matrix=np.stack(cols, axis=1).reshape(n, len(features)).astype(dtype))
    return RowBlock(n, columns=[c.astype(dtype) for c in cols])


@pytest.mark.parametrize("form", ["matrix", "columns"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(20))
def test_binned_features_match_reference(seed, dtype, form):
    rng = np.random.default_rng(1000 + seed)
    features, width = binned_features(rng, int(rng.integers(1, 8)))
    got = check(features, width, [binned_block(rng, features, n, form, dtype) for n in SIZES])
    for f in features:  # exactly one bin per row: one-hot blocks, nothing left unwritten
        if f.numeric.bins is not None:
            np.testing.assert_array_equal(got[:, f.column : f.column + f.width].sum(axis=1), 1.0)


def test_binned_matrix_form_is_offered():
    features, width = binned_features(np.random.default_rng(4), 3)
    assert FeatureNormalizer(features, width)._plan.has_matrix_form


def test_bins_by_hand_edges_below_above_and_nan():
    # edges 0, 1, 2 after clip [-5, 1.5]: an impute of 1.0 lands exactly on an edge
    spec = NumericSpec(impute=1.0, clip_low=-5.0, clip_high=1.5, bins=(0.0, 1.0, 2.0))
    features = [FeatureSpec("x", "numeric", 0, numeric=spec), FeatureSpec("y", "numeric", 4, numeric=NumericSpec(allow_nan=True))]
    x = np.array([-1.0, 0.0, 0.5, 1.0, 1.99, 2.0, 7.0, np.nan, -0.0, -7.0])
    got = FeatureNormalizer(features, 5).gather([RowBlock(10, matrix=np.column_stack([x, x]))])
    # searchsorted side='right': on an edge goes up; 2.0 and 7.0 are clipped to 1.5 (bin 2);
    # bin 3 (>= 2) is unreachable through the clip
    bins = [0, 1, 1, 2, 2, 2, 2, 2, 1, 0]
    np.testing.assert_array_equal(got[:, :4], np.eye(4, dtype=np.float32)[bins])
    np.testing.assert_array_equal(got[:, 4], np.where(np.isnan(x), np.nan, x).astype(np.float32))


def test_a_single_bin_is_always_one():
    spec = NumericSpec(impute=0.0, bins=())
    got = FeatureNormalizer([FeatureSpec("x", "numeric", 0, numeric=spec)], 1).gather_one(
        RowBlock(3, columns=[np.array([np.nan, -1e300, 1e300])])
    )
    np.testing.assert_array_equal(got, [[1.0], [1.0], [1.0]])


@pytest.mark.parametrize("seed", range(5))
def test_bins_equal_kbinsdiscretizer(seed):
    """The folded edges reproduce scikit-learn's transform, including bins it removed at fit
    (repeated quantiles) and values exactly on the fitted edges."""
    rng = np.random.default_rng(seed)
    train = np.concatenate([np.round(rng.lognormal(1, 1, 500), 1), np.zeros(300)])  # many equal quantiles
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "bins whose width are too small are removed"
        kb = KBinsDiscretizer(n_bins=12, encode="onehot-dense", strategy="quantile", quantile_method="linear")
        kb.fit(train.reshape(-1, 1))
    edges = kb.bin_edges_[0]
    assert kb.n_bins_[0] < 12  # some were removed
    test = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), rng.normal(3, 5, 200)])
    spec = NumericSpec(bins=tuple(edges[1:-1].tolist()))
    norm = FeatureNormalizer([FeatureSpec("x", "numeric", 0, numeric=spec)], int(kb.n_bins_[0]))
    got = norm.gather_one(RowBlock(len(test), columns=[test]))
    np.testing.assert_array_equal(got, kb.transform(test.reshape(-1, 1)).astype(np.float32))


@pytest.mark.parametrize(
    "value, reason, row",
    [(np.nan, "is NaN and the model has no imputer", 1), (np.inf, "is infinite", 1), (-np.inf, "is infinite", 1)],
)
@pytest.mark.parametrize("form", ["matrix", "columns"])
def test_binned_errors_match_reference(value, reason, row, form):
    features = [
        FeatureSpec("ok", "numeric", 0, numeric=NumericSpec(impute=0.0, bins=(0.0,))),
        FeatureSpec("strict", "numeric", 2, numeric=NumericSpec(bins=(-1.0, 1.0))),
    ]
    m = np.array([[np.nan, 0.0], [1.0, value], [2.0, 3.0]])
    block = RowBlock(3, matrix=m) if form == "matrix" else RowBlock(3, columns=[m[:, 0].copy(), m[:, 1].copy()])
    with pytest.raises(FeatureValueError) as ref:
        normalize_reference(features, 5, [block])
    with pytest.raises(FeatureValueError) as got:
        FeatureNormalizer(features, 5).gather([block])
    assert (got.value.feature, got.value.row, got.value.reason) == (ref.value.feature, ref.value.row, ref.value.reason)
    assert (got.value.feature, got.value.row, got.value.reason) == ("strict", row, reason)


def test_binned_feature_sketch_counts_the_raw_value():
    spec = NumericSpec(impute=0.0, offset=10.0, clip_low=-1.0, clip_high=1.0, bins=(0.0,))
    features = [FeatureSpec("x", "numeric", 0, numeric=spec)]
    norm = FeatureNormalizer(features, 2, {"x": np.array([0.0, 10.0, 20.0])})
    x = np.array([-5.0, 5.0, 10.0, 15.0, 25.0, np.nan], dtype=np.float32)
    for form in ("matrix", "columns"):
        block = RowBlock(6, matrix=x.reshape(-1, 1)) if form == "matrix" else RowBlock(6, columns=[x])
        norm.gather([block])
    # raw: below 0 | [0, 10) | [10, 20] | above | NaN (not the clipped or imputed value)
    assert norm.sketch_counts["x"].tolist() == [2, 2, 4, 2, 2]


# ---- crosses -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(25))
def test_crosses_match_reference(seed, dtype):
    rng = np.random.default_rng(2000 + seed)
    features, crosses, width = cross_features(rng)
    check(features, width, [cross_block(rng, features, n, dtype) for n in SIZES], crosses)


def test_cross_by_hand_unknown_missing_and_separator():
    features = [
        FeatureSpec("merchant", "categorical", 0, categorical=CategoricalSpec(("cafe", "fuel"), unknown="ignore")),
        FeatureSpec("channel", "categorical", 0, categorical=CategoricalSpec((), encoding="none", unknown="ignore")),
        FeatureSpec("amount", "numeric", 2),
    ]
    cross = CrossSpec("merchant_x_channel", ("merchant", "channel"), 3,
                      CategoricalSpec(("cafe|web", "fuel|", "|web", "a|b|c"), unknown="ignore"))
    merchant = ["cafe", "fuel", "", "cafe", "a|b", "a", "fuel"]
    channel = ["web", "", "web", "shop", "c", "b|c", "web"]
    block = RowBlock(7, columns=[v2bytes.encode(merchant), memoryview(v2bytes.encode(channel)), np.arange(7.0)])
    got = FeatureNormalizer(features, 7, crosses=[cross]).gather_one(block)
    expected_cross = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    np.testing.assert_array_equal(got[:, 3:], expected_cross)
    np.testing.assert_array_equal(got[:, :2], [[1, 0], [0, 1], [0, 0], [1, 0], [0, 0], [0, 0], [0, 1]])
    np.testing.assert_array_equal(got[:, 2], np.arange(7.0))
    np.testing.assert_array_equal(got, normalize_reference(features, 7, [block], [cross]))


def test_cross_with_another_separator_and_utf8():
    cat = CategoricalSpec((), encoding="none", unknown="ignore")
    features = [FeatureSpec("a", "categorical", 0, categorical=cat), FeatureSpec("b", "categorical", 0, categorical=cat)]
    cross = CrossSpec("ab", ("b", "a"), 0, CategoricalSpec(("é::ü", "::"), unknown="ignore"), separator="::")
    block = RowBlock(3, columns=[v2bytes.encode(["ü", "", "ü"]), v2bytes.encode(["é", "", "e"])])
    got = FeatureNormalizer(features, 2, crosses=[cross]).gather_one(block)
    np.testing.assert_array_equal(got, [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(got, normalize_reference(features, 2, [block], [cross]))


PARENT = CategoricalSpec((), encoding="none", unknown="ignore")
CROSS_FEATURES = [
    FeatureSpec("a", "categorical", 0, categorical=CategoricalSpec(("x", "y"), unknown="ignore")),
    FeatureSpec("b", "categorical", 0, categorical=PARENT),
]
CROSS = CrossSpec("a_x_b", ("a", "b"), 2, CategoricalSpec(("x|1", "y|2"), unknown="ignore"))


def cross_errors(blocks):
    with pytest.raises(FeatureValueError) as ref:
        normalize_reference(CROSS_FEATURES, 4, blocks, [CROSS])
    with pytest.raises(FeatureValueError) as got:
        FeatureNormalizer(CROSS_FEATURES, 4, crosses=[CROSS]).gather(blocks)
    return got.value, ref.value


GOOD_B = v2bytes.encode(["1", "2"])


@pytest.mark.parametrize(
    "a, b, feature, reason",
    [
        (v2bytes.encode(["x"]), GOOD_B, "a", "has 1 elements, expected 2"),
        (v2bytes.encode(["x", "y"]), v2bytes.encode(["1", "2", "3"]), "b", "has 3 elements, expected 2"),
        (v2bytes.encode(["x", "y"]), GOOD_B[:-1], "b", "malformed BYTES: element 1 claims 1 bytes at byte 9, only 0 left"),
        (v2bytes.encode(["x", "y"]), GOOD_B + b"\0", "b", "malformed BYTES: truncated length prefix at byte 10"),
        (v2bytes.encode(["x", "y"]) + struct.pack("<I", 7), GOOD_B, "a",
         "malformed BYTES: element 2 claims 7 bytes at byte 14, only 0 left"),
    ],
)
def test_malformed_parent_is_named(a, b, feature, reason):
    good = RowBlock(2, columns=[v2bytes.encode(["x", "zz"]), GOOD_B])
    got, ref = cross_errors([good, RowBlock(2, columns=[a, b])])
    assert (got.feature, got.row, got.reason) == (ref.feature, ref.row, ref.reason) == (feature, 0, reason)


def test_input_only_parent_sketch_counts_everything_as_unknown():  # and empty values as missing
    norm = FeatureNormalizer(CROSS_FEATURES, 4, {"b": None}, crosses=[CROSS])
    norm.gather([RowBlock(2, columns=[v2bytes.encode(["x", "y"]), GOOD_B])])
    assert norm.sketch_counts["b"].tolist() == [2, 0]  # unknown, missing


def test_bad_bins_and_crosses_are_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        FeatureNormalizer([FeatureSpec("x", "numeric", 0, numeric=NumericSpec(bins=(1.0, 1.0)))], 3)
    with pytest.raises(ValueError, match="allow_nan"):
        FeatureNormalizer([FeatureSpec("x", "numeric", 0, numeric=NumericSpec(allow_nan=True, bins=(1.0,)))], 2)
    numeric_parent = [CROSS_FEATURES[0], FeatureSpec("b", "numeric", 2)]
    with pytest.raises(ValueError, match="input 'b' is not a categorical feature"):
        FeatureNormalizer(numeric_parent, 5, crosses=[replace(CROSS, column=3)])
    with pytest.raises(ValueError, match="overlaps"):
        FeatureNormalizer(CROSS_FEATURES, 4, crosses=[CrossSpec("c", ("a", "b"), 1, CROSS.categorical)])
    with pytest.raises(ValueError, match="unknown 'ignore'"):
        spec = CategoricalSpec(("x|1",), unknown="error")
        FeatureNormalizer(CROSS_FEATURES, 3, crosses=[CrossSpec("c", ("a", "b"), 2, spec)])
