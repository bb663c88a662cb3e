"""The compiled gather + normalize against the numpy reference, on random specs and layouts."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from onyxserve.core.normalizer import FeatureNormalizer, RowBlock
from onyxserve.core.reference import normalize_reference
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CategoricalSpec, FeatureSpec, NumericSpec

from tests.core.normalizer_cases import random_block, random_features

SIZES = [1, 0, 3, 1, 17, 1, 64]


def check(features, width, blocks, out=None):
    expected = normalize_reference(features, width, blocks)
    got = FeatureNormalizer(features, width).gather(blocks, out)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    return got


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(25))
def test_matrix_form_matches_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    features, width = random_features(rng, int(rng.integers(1, 12)), categorical=False)
    check(features, width, [random_block(rng, features, n, "matrix", dtype) for n in SIZES])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(25))
def test_column_form_matches_reference(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    features, width = random_features(rng, int(rng.integers(1, 10)), categorical=True)
    check(features, width, [random_block(rng, features, n, "columns", dtype) for n in SIZES])


def test_mixed_forms_into_given_output():
    rng = np.random.default_rng(7)
    features, width = random_features(rng, 6, categorical=False)
    layout = [(2, "matrix"), (3, "columns"), (1, "matrix")]
    blocks = [random_block(rng, features, n, form) for n, form in layout]
    out = np.full((6, width), 99.0, dtype=np.float32)
    assert check(features, width, blocks, out) is out


def test_strided_and_misaligned_inputs():
    rng = np.random.default_rng(3)
    features, width = random_features(rng, 5, categorical=False)
    data = random_block(rng, features, 40, "matrix").matrix
    big = np.zeros((80, 15))
    big[::2, ::3] = data
    raw = np.concatenate([[0], data.astype(np.float32).ravel()]).astype(np.float32).tobytes()[4:]
    misaligned = np.frombuffer(b"\0" + raw, dtype=np.float32, offset=1).reshape(40, 5)
    assert not misaligned.flags.aligned
    readonly = data.copy()
    readonly.setflags(write=False)
    views = [big[::2, ::3], np.asfortranarray(data), data[::-1], data[::-1, ::-1][:, ::-1], misaligned,
             readonly]
    check(features, width, [RowBlock(40, matrix=v) for v in views])
    check(features, width, [RowBlock(40, columns=[big[::2, 3 * j] for j in range(5)])])
    check(features, width, [RowBlock(40, columns=[data[:, j : j + 1] for j in range(5)])])  # [n, 1] columns


def test_large_block_runs_without_gil_and_matches():
    rng = np.random.default_rng(11)
    features, width = random_features(rng, 30, categorical=False)
    block = random_block(rng, features, 4096, "matrix")  # over the no-GIL threshold
    norm = FeatureNormalizer(features, width)
    expected = normalize_reference(features, width, [block])
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(norm.gather([block] * 3))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, np.concatenate([expected] * 3))


def test_onehot_drop_and_ordinal_by_hand():
    onehot = CategoricalSpec(("a", "b", "c"), drop=1, unknown="ignore", impute="c")
    ordinal = CategoricalSpec(("x", "yy"), encoding="ordinal", unknown="ignore", unknown_value=-1.0)
    features = [
        FeatureSpec("oh", "categorical", 1, categorical=onehot),
        FeatureSpec("num", "numeric", 0, numeric=NumericSpec(offset=1.0, scale=2.0)),
        FeatureSpec("ord", "categorical", 3, categorical=ordinal),
    ]
    block = RowBlock(
        4,
        columns=[
            memoryview(v2bytes.encode(["a", "b", "", "zz"])),  # memoryview, not bytes
            np.array([1, 2, 3, 4], dtype=np.float32),
            bytearray(v2bytes.encode(["yy", "x", "", "x"])),
        ],
    )
    got = FeatureNormalizer(features, 4).gather_one(block)
    expected = [[0, 1, 0, 1], [2, 0, 0, 0], [4, 0, 1, -1], [6, 0, 0, 0]]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))


def test_from_manifest_and_attributes():
    from onyxserve.repository.manifest import ModelSpec

    features = (FeatureSpec("a", "numeric", 0, numeric=NumericSpec()), FeatureSpec("b", "binary", 1))
    model = ModelSpec("model.onnx", "0" * 64, "input", 2, {"value": "variable"})
    from onyxserve.repository.manifest import Manifest

    norm = FeatureNormalizer.from_manifest(Manifest("m", "1", "regression", features, model))
    assert (norm.width, norm.n_features) == (2, 2)
    out = norm.gather([RowBlock(1, matrix=np.array([[1.5, 1.0]]))])
    np.testing.assert_array_equal(out, [[1.5, 1.0]])
    assert norm.gather([]).shape == (0, 2)
