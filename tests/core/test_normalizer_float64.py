"""The float64 output (models that compare in double): the kernel's value before its float32
rounding, bit for bit the reference's; and the float32 output is exactly that value rounded."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.core.normalizer import FeatureNormalizer, RowBlock
from onyxserve.core.reference import normalize_reference
from onyxserve.repository.manifest import FeatureSpec, NumericSpec

from tests.core.normalizer_cases import cross_block, cross_features, random_block, random_features

SIZES = [1, 3, 17, 64]


@pytest.mark.parametrize("form", ["matrix", "columns"])
@pytest.mark.parametrize("seed", range(12))
def test_float64_output_matches_reference_and_rounds_to_float32(seed, form):
    rng = np.random.default_rng(500 + seed)
    features, width = random_features(rng, int(rng.integers(1, 10)), categorical=form == "columns")
    blocks = [random_block(rng, features, n, form, np.float64 if seed % 2 else np.float32) for n in SIZES]
    wide = FeatureNormalizer(features, width, dtype="float64").gather(blocks)
    assert wide.dtype == np.float64 and wide.flags.c_contiguous
    np.testing.assert_array_equal(wide, normalize_reference(features, width, blocks, dtype="float64"))
    narrow = FeatureNormalizer(features, width).gather(blocks)
    assert narrow.dtype == np.float32
    np.testing.assert_array_equal(narrow, wide.astype(np.float32))


@pytest.mark.parametrize("seed", range(8))
def test_float64_bins_and_crosses(seed):
    rng = np.random.default_rng(900 + seed)
    features, crosses, width = cross_features(rng)
    blocks = [cross_block(rng, features, n) for n in SIZES]
    got = FeatureNormalizer(features, width, crosses=crosses, dtype="float64").gather(blocks)
    np.testing.assert_array_equal(got, normalize_reference(features, width, blocks, crosses, dtype="float64"))


def test_scaler_operations_are_numpys():
    """(x - mean) / scale and x * scale + min, one rounding each, as scikit-learn's scalers."""
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(15, 2, 5000), 1)
    mean, std = float(x.mean()), float(x.std())
    standard = FeatureSpec("x", "numeric", 0, numeric=NumericSpec(offset=mean, divisor=std))
    got = FeatureNormalizer([standard], 1, dtype="float64").gather([RowBlock(len(x), matrix=x[:, None])])
    np.testing.assert_array_equal(got[:, 0], (x - mean) / std)
    assert ((x - mean) * (1 / std) != (x - mean) / std).any()  # what offset/scale alone gives differs
    s, m = 1 / float(np.ptp(x)), -float(x.min()) / float(np.ptp(x))
    minmax = FeatureSpec("x", "numeric", 0, numeric=NumericSpec(scale=s, shift=m))
    got = FeatureNormalizer([minmax], 1, dtype="float64").gather([RowBlock(len(x), columns=[x])])
    np.testing.assert_array_equal(got[:, 0], x * s + m)


def test_given_output_must_have_the_models_dtype():
    features = [FeatureSpec("a", "numeric", 0, numeric=NumericSpec())]
    block = RowBlock(2, matrix=np.array([[1.0], [2.5]]))
    wide = FeatureNormalizer(features, 1, dtype="float64")
    out = np.zeros((2, 1))
    assert wide.gather([block], out) is out and out.tolist() == [[1.0], [2.5]]
    with pytest.raises(TypeError, match="float32"):
        wide.gather([block], np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        FeatureNormalizer(features, 1, dtype="float16")
