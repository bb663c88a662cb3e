"""Random feature specs and request blocks for the compiled-normalizer tests."""

from __future__ import annotations

import numpy as np

from onyxserve.core import v2bytes
from onyxserve.core.manifest import CategoricalSpec, FeatureSpec, NumericSpec
from onyxserve.core.normalizer import RowBlock


def numeric_spec(rng: np.random.Generator) -> NumericSpec:
    mode = rng.integers(3)  # 0 imputer, 1 NaN passes through, 2 NaN rejected
    low = float(rng.normal()) if rng.random() < 0.5 else -np.inf
    high = low + float(rng.uniform(0.5, 3)) if rng.random() < 0.5 else np.inf
    return NumericSpec(
        impute=float(rng.normal()) if mode == 0 else None,
        allow_nan=bool(mode == 1),
        offset=float(rng.normal(0, 3)),
        scale=float(rng.uniform(0.1, 5)),
        clip_low=low,
        clip_high=high,
    )


def categorical_spec(rng: np.random.Generator) -> CategoricalSpec:
    n = int(rng.integers(1, 12))
    cats = tuple(f"c{i}-{'é' * int(rng.integers(3))}" for i in range(n))
    encoding = "onehot" if rng.random() < 0.7 else "ordinal"
    return CategoricalSpec(
        categories=cats,
        encoding=encoding,
        drop=int(rng.integers(n)) if encoding == "onehot" and rng.random() < 0.4 else None,
        unknown="ignore" if rng.random() < 0.5 else "error",
        unknown_value=float(rng.choice([np.nan, -1.0])),
        impute=str(rng.choice(cats)) if rng.random() < 0.5 else None,
    )


def random_features(rng: np.random.Generator, n: int, categorical: bool) -> tuple[list[FeatureSpec], int]:
    """``n`` features in shuffled column order; returns them and the input width."""
    kinds = ["categorical" if categorical and rng.random() < 0.35 else "numeric" for _ in range(n)]
    specs = [categorical_spec(rng) if k == "categorical" else numeric_spec(rng) for k in kinds]
    widths = [s.width if k == "categorical" else 1 for k, s in zip(kinds, specs)]
    order = rng.permutation(n)  # feature j need not write column j
    starts = np.zeros(n, dtype=int)
    starts[order] = np.concatenate([[0], np.cumsum(np.array(widths)[order])[:-1]])
    features = [
        FeatureSpec(f"f{j}", k, int(starts[j]), **{"categorical" if k == "categorical" else "numeric": s})
        for j, (k, s) in enumerate(zip(kinds, specs))
    ]
    return features, int(sum(widths))


def numeric_values(rng: np.random.Generator, spec: NumericSpec, n: int) -> np.ndarray:
    """Valid values for ``spec``: NaNs only where it takes them."""
    x = rng.normal(0, 4, n)
    if spec.impute is not None or spec.allow_nan:
        x[rng.random(n) < 0.3] = np.nan
    return x


def category_values(rng: np.random.Generator, spec: CategoricalSpec, n: int) -> list[str]:
    """Valid values for ``spec``: unknown or missing only where it takes them."""
    pool = list(spec.categories)
    if spec.unknown == "ignore":
        pool += ["zz-unknown", "c0"[:1]]
    if spec.impute is not None or spec.unknown == "ignore":
        pool.append("")
    return [pool[i] for i in rng.integers(len(pool), size=n)]


def random_block(rng: np.random.Generator, features: list[FeatureSpec], n: int, form: str,
                 dtype: type = np.float64) -> RowBlock:
    if form == "matrix":
        cols = [numeric_values(rng, f.numeric, n) for f in features]
        return RowBlock(n, matrix=np.stack(cols, axis=1).reshape(n, len(features)).astype(dtype))
    columns = []
    for f in features:
        if f.categorical is not None:
            columns.append(v2bytes.encode(category_values(rng, f.categorical, n)))
        else:
            columns.append(numeric_values(rng, f.numeric, n).astype(dtype))
    return RowBlock(n, columns=columns)
