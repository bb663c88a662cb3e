"""Data errors name the same feature, row and reason as the reference; misuse raises Type/ValueError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from onyxserve.core.normalizer import FeatureNormalizer, FeatureValueError, RowBlock
from onyxserve.core.reference import normalize_reference
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CategoricalSpec, FeatureSpec, NumericSpec

from tests.core.normalizer_cases import random_block, random_features

STRICT = NumericSpec(offset=1.0)  # no imputer, NaN rejected
FEATURES = [
    FeatureSpec("amount", "numeric", 0, numeric=STRICT),
    FeatureSpec("country", "categorical", 1, categorical=CategoricalSpec(("fr", "de"), unknown="error")),
    FeatureSpec("age", "numeric", 3, numeric=NumericSpec(impute=0.0)),
]


def errors(blocks, features=FEATURES, width=4) -> tuple[FeatureValueError, FeatureValueError]:
    with pytest.raises(FeatureValueError) as ref:
        normalize_reference(features, width, blocks)
    with pytest.raises(FeatureValueError) as got:
        FeatureNormalizer(features, width).gather(blocks)
    return got.value, ref.value


def block(amount=(1.0, 2.0), country=v2bytes.encode(["fr", "de"]), age=(1.0, 2.0)) -> RowBlock:
    return RowBlock(2, columns=[np.array(amount), country, np.array(age)])


@pytest.mark.parametrize(
    "bad, feature, row, reason",
    [
        (block(amount=(1.0, np.nan)), "amount", 1, "is NaN and the model has no imputer"),
        (block(amount=(np.nan, -np.inf)), "amount", 1, "is infinite"),  # infinities reported first
        (block(age=(np.inf, 1.0)), "age", 0, "is infinite"),
        (block(country=v2bytes.encode(["fr", "it"])), "country", 1, "unknown category 'it'"),
        (block(country=v2bytes.encode(["fr", "é"])), "country", 1, "unknown category 'é'"),
        (block(country=v2bytes.encode(["", "fr"])), "country", 0, "unknown category ''"),
        (block(country=v2bytes.encode(["fr"])), "country", 0, "has 1 elements, expected 2"),
        (block(country=v2bytes.encode(["fr", "de", "fr"])), "country", 0, "has 3 elements, expected 2"),
        (block(country=v2bytes.encode(["fr", "de"])[:-1]), "country", 0,
         "malformed BYTES: element 1 claims 2 bytes at byte 10, only 1 left"),
        (block(country=v2bytes.encode(["fr", "de"]) + b"\1\0"), "country", 0,
         "malformed BYTES: truncated length prefix at byte 12"),
        (block(country=v2bytes.encode(["it"]) + struct.pack("<I", 2**32 - 1)), "country", 0,
         "malformed BYTES: element 1 claims 4294967295 bytes at byte 10, only 0 left"),
        # malformed wins over an earlier unknown category, as the reference decodes first
        (block(country=v2bytes.encode(["it", "de"])[:-1]), "country", 0,
         "malformed BYTES: element 1 claims 2 bytes at byte 10, only 1 left"),
    ],
)
def test_error_names_feature_row_and_reason(bad, feature, row, reason):
    good = block()
    got, ref = errors([good, bad])
    assert (got.feature, got.row, got.reason) == (ref.feature, ref.row, ref.reason) == (feature, row, reason)
    assert f"feature '{feature}'" in str(got)


def test_matrix_form_reports_the_references_error():
    features = [FeatureSpec(f"f{j}", "numeric", j, numeric=STRICT) for j in range(3)]
    m = np.ones((4, 3), dtype=np.float32)
    m[1, 2] = np.nan  # found first in row-major order...
    m[3, 0] = np.nan  # ...but the reference goes feature by feature
    m[2, 0] = np.inf  # ...and reports infinities before NaNs
    got, ref = errors([RowBlock(4, matrix=np.ones((4, 3))), RowBlock(4, matrix=m)], features, 3)
    assert (got.feature, got.row, got.reason) == (ref.feature, ref.row, ref.reason)
    assert (got.feature, got.row, got.reason) == ("f0", 2, "is infinite")


def test_categorical_imputer_outside_categories_is_unknown():
    spec = CategoricalSpec(("a",), impute="missing")
    features = [FeatureSpec("c", "categorical", 0, categorical=spec)]
    got, ref = errors([RowBlock(2, columns=[v2bytes.encode(["a", ""])])], features, 1)
    assert (got.feature, got.row, got.reason) == (ref.feature, ref.row, ref.reason)
    assert (got.feature, got.row, got.reason) == ("c", 1, "unknown category 'missing'")


@pytest.mark.parametrize("seed", range(30))
def test_random_injected_errors_match_reference(seed):
    rng = np.random.default_rng(500 + seed)
    features, width = random_features(rng, 6, categorical=True)
    blocks = [random_block(rng, features, n, "columns") for n in (1, 5, 3)]
    for _ in range(3):  # several bad values, so which one is reported matters
        b, j = int(rng.integers(3)), int(rng.integers(6))
        col, n = blocks[b].columns[j], blocks[b].n_rows
        if features[j].categorical is not None:
            cut = rng.integers(4)
            blocks[b].columns[j] = [col[:-1], col + b"\0", v2bytes.encode(["?"] * n), col[4:]][cut]
        else:
            col[int(rng.integers(n))] = [np.inf, -np.inf, np.nan][rng.integers(3)]
    try:
        expected = normalize_reference(features, width, blocks)
    except FeatureValueError as ref:
        with pytest.raises(FeatureValueError) as got:
            FeatureNormalizer(features, width).gather(blocks)
        assert (got.value.feature, got.value.row, got.value.reason) == (ref.feature, ref.row, ref.reason)
    else:
        np.testing.assert_array_equal(FeatureNormalizer(features, width).gather(blocks), expected)


NUMERIC = [FeatureSpec("a", "numeric", 0), FeatureSpec("b", "numeric", 1)]


@pytest.mark.parametrize(
    "blocks, out, exc, match",
    [
        ([RowBlock(1, matrix=np.ones((1, 2), dtype=np.int64))], None, TypeError, "float32 or float64"),
        ([RowBlock(1, matrix=np.ones((1, 2), dtype=">f8"))], None, TypeError, "byte order"),
        ([RowBlock(1, matrix=[[1.0, 2.0]])], None, TypeError, "numpy"),
        ([RowBlock(2, matrix=np.ones((1, 2)))], None, ValueError, "shape"),
        ([RowBlock(1, matrix=np.ones((1, 3)))], None, ValueError, "shape"),
        ([RowBlock(1)], None, ValueError, "neither"),
        ([RowBlock(1, columns=[np.ones(1)])], None, ValueError, "1 columns, expected 2"),
        ([RowBlock(1, columns=[np.ones(1), b"x"])], None, TypeError, "'b'"),
        ([RowBlock(1, columns=[np.ones(2), np.ones(1)])], None, ValueError, "'a'"),
        ([RowBlock(1, matrix=np.ones((1, 2)))], np.zeros((1, 2)), TypeError, "float32"),
        ([RowBlock(1, matrix=np.ones((1, 2)))], np.zeros((2, 2), np.float32), ValueError, "shape"),
        ([RowBlock(2, matrix=np.ones((2, 2)))], np.zeros((2, 4), np.float32)[:, ::2], ValueError,
         "C-contiguous"),
    ],
)
def test_misuse_raises_type_or_value_error(blocks, out, exc, match):
    with pytest.raises(exc, match=match):
        FeatureNormalizer(NUMERIC, 2).gather(blocks, out)


def test_misuse_with_categorical_features():
    norm = FeatureNormalizer(FEATURES, 4)
    with pytest.raises(ValueError, match="all-numeric"):
        norm.gather([RowBlock(1, matrix=np.ones((1, 3)))])
    with pytest.raises(TypeError, match="'country'"):
        norm.gather([RowBlock(1, columns=[np.ones(1), "fr", np.ones(1)])])
    with pytest.raises(TypeError, match="'country'"):
        norm.gather([RowBlock(1, columns=[np.ones(1), np.ones(1), np.ones(1)])])


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="width"):
        FeatureNormalizer(NUMERIC, 1)
    with pytest.raises(ValueError, match="written by no feature"):
        FeatureNormalizer(NUMERIC, 3)
    with pytest.raises(ValueError, match="overlaps"):
        FeatureNormalizer([FeatureSpec("a", "numeric", 0), FeatureSpec("b", "numeric", 0)], 1)
    with pytest.raises(ValueError, match="unknown features"):
        FeatureNormalizer(NUMERIC, 2, {"zz": np.array([0.0])})
    with pytest.raises(ValueError, match="strictly increasing"):
        FeatureNormalizer(NUMERIC, 2, {"a": np.array([1.0, 0.0])})
