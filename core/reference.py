"""Plain-numpy normalization, equivalent to the compiled core.

Two jobs: the oracle the Cython kernel is tested against, and the "equivalent numpy code"
the micro-benchmarks compare the kernel with. Not used on the serving path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onyxserve.core.normalizer import FeatureValueError, RowBlock
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CrossSpec, FeatureSpec, NumericSpec


def _numeric(spec, values: np.ndarray, name: str) -> np.ndarray:
    x = values.astype(np.float64)
    if np.isinf(x).any():
        raise FeatureValueError(name, int(np.flatnonzero(np.isinf(x))[0]), "is infinite")
    nan = np.isnan(x)
    if nan.any():
        if spec.impute is not None:
            x = np.where(nan, spec.impute, x)
        elif not spec.allow_nan:
            raise FeatureValueError(name, int(np.flatnonzero(nan)[0]), "is NaN and the model has no imputer")
    x = spec.normalized(x)
    if spec.bins is None:
        return x[:, None]
    # KBinsDiscretizer.transform: searchsorted over the interior edges, side='right'; one-hot
    onehot = np.zeros((len(x), len(spec.bins) + 1), dtype=np.float64)
    onehot[np.arange(len(x)), np.searchsorted(np.asarray(spec.bins, dtype=np.float64), x, side="right")] = 1.0
    return onehot


def _categorical(spec, buffer: bytes, n_rows: int, name: str) -> np.ndarray:
    try:
        values = [v.decode("utf-8") for v in v2bytes.decode(buffer)]
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeatureValueError(name, 0, f"malformed BYTES: {exc}") from None
    if len(values) != n_rows:
        raise FeatureValueError(name, 0, f"has {len(values)} elements, expected {n_rows}")
    index = {c: i for i, c in enumerate(spec.categories)}
    codes = np.empty(n_rows, dtype=np.int64)
    for row, v in enumerate(values):
        if v == "" and spec.impute is not None:
            v = spec.impute
        code = index.get(v, -1)
        if code < 0 and spec.unknown == "error":
            raise FeatureValueError(name, row, f"unknown category {v!r}")
        codes[row] = code
    if spec.encoding == "none":
        return np.zeros((n_rows, 0), dtype=np.float64)
    if spec.encoding == "ordinal":
        return np.where(codes >= 0, codes, spec.unknown_value).astype(np.float64)[:, None]
    onehot = np.zeros((n_rows, len(spec.categories)), dtype=np.float64)
    known = codes >= 0
    onehot[np.flatnonzero(known), codes[known]] = 1.0
    if spec.drop is not None:
        onehot = np.delete(onehot, spec.drop, axis=1)
    return onehot


def _cross(cross: CrossSpec, parents: Sequence[bytes | memoryview]) -> np.ndarray:
    """One-hot of ``a + separator + b`` over the raw bytes (the inputs are already validated)."""
    spec = cross.categorical
    index = {c.encode("utf-8"): i for i, c in enumerate(spec.categories)}
    sep = cross.separator.encode("utf-8")
    a, b = (v2bytes.decode(p) for p in parents)
    onehot = np.zeros((len(a), len(spec.categories)), dtype=np.float64)
    for row, (x, y) in enumerate(zip(a, b)):
        code = index.get(bytes(x) + sep + bytes(y), -1)
        if code >= 0:
            onehot[row, code] = 1.0
    if spec.drop is not None:
        onehot = np.delete(onehot, spec.drop, axis=1)
    return onehot


def normalize_reference(
    features: Sequence[FeatureSpec],
    width: int,
    blocks: Sequence[RowBlock],
    crosses: Sequence[CrossSpec] = (),
    dtype: str = "float32",
) -> np.ndarray:
    """Gather and normalize ``blocks`` into a new ``dtype`` ``[rows, width]`` matrix."""
    parts = []
    index = {f.name: j for j, f in enumerate(features)}
    for block in blocks:
        out = np.empty((block.n_rows, width), dtype=np.float64)
        for j, f in enumerate(features):
            if f.categorical is not None:
                out[:, f.column : f.column + f.width] = _categorical(
                    f.categorical, block.columns[j], block.n_rows, f.name
                )
            else:
                src = block.matrix[:, j] if block.matrix is not None else block.columns[j]
                out[:, f.column : f.column + f.width] = _numeric(f.numeric or NumericSpec(), np.asarray(src).reshape(-1), f.name)
        for x in crosses:
            parents = [block.columns[index[name]] for name in x.inputs]
            out[:, x.column : x.column + x.width] = _cross(x, parents)
        parts.append(out)
    return np.concatenate(parts).astype(dtype)
