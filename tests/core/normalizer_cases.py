"""Random feature specs and request blocks for the compiled-normalizer tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from onyxserve.core.normalizer import RowBlock
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CategoricalSpec, CrossSpec, FeatureSpec, NumericSpec


def numeric_spec(rng: np.random.Generator) -> NumericSpec:
    mode = rng.integers(3)  # 0 imputer, 1 NaN passes through, 2 NaN rejected
    low = float(rng.normal()) if rng.random() < 0.5 else -np.inf
    high = low + float(rng.uniform(0.5, 3)) if rng.random() < 0.5 else np.inf
    exact = rng.random() < 0.5  # a scaler kept as scikit-learn computes it (divisor, shift)
    return NumericSpec(
        impute=float(rng.normal()) if mode == 0 else None,
        allow_nan=bool(mode == 1),
        offset=float(rng.normal(0, 3)),
        scale=float(rng.uniform(0.1, 5)),
        clip_low=low,
        clip_high=high,
        divisor=float(rng.uniform(0.1, 5)) if exact else 1.0,
        shift=float(rng.normal()) if exact else 0.0,
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


# ---- binned numeric features and crosses -------------------------------------------------


def binned_spec(rng: np.random.Generator) -> NumericSpec:
    """A numeric spec with interior bin edges in the units after offset/scale/clip; NaN is
    imputed or rejected (a bin table has no bin for NaN). Some edges sit on the clip bounds."""
    base = numeric_spec(rng)
    n = int(rng.integers(0, 9))
    bins = np.unique(np.round(rng.normal(0, 3, n), 1))
    low, high = base.clip_low, base.clip_high
    if len(bins) and rng.random() < 0.5:
        low = float(bins[0])  # clipped values land exactly on the first edge
    if len(bins) > 1 and rng.random() < 0.5:
        high = float(bins[-1])
    return NumericSpec(
        impute=base.impute if base.impute is not None or rng.random() < 0.5 else float(rng.normal()),
        allow_nan=False,
        offset=float(np.round(base.offset, 1)),
        scale=1.0 if rng.random() < 0.5 else 0.5,  # exact, so raw values can hit the edges
        clip_low=low,
        clip_high=max(low, high),
        bins=tuple(float(b) for b in bins),
    )


def binned_values(rng: np.random.Generator, spec: NumericSpec, n: int) -> np.ndarray:
    """Raw values that land below, above and exactly on the edges after normalization."""
    x = rng.normal(0, 4, n)
    if spec.bins:
        raw_edges = np.asarray(spec.bins) / spec.scale + spec.offset  # exact for scale 1 or 0.5
        on_edge = rng.random(n) < 0.4
        x[on_edge] = rng.choice(raw_edges, on_edge.sum())
        x[rng.random(n) < 0.1] = raw_edges[0] - 100.0
        x[rng.random(n) < 0.1] = raw_edges[-1] + 100.0
    if spec.impute is not None:
        x[rng.random(n) < 0.2] = np.nan
    return x


PARTS = ["a", "b", "é", "", "a|b", "x"]  # "" is missing; "a|b" contains the separator


def cross_features(rng: np.random.Generator) -> tuple[list[FeatureSpec], list[CrossSpec], int]:
    """Numeric and binned features, categorical parents (some input-only), 1-3 crosses; shuffled
    columns. Cross tables hold joined keys of PARTS plus keys no row can produce."""
    features: list[FeatureSpec] = []
    widths: list[int] = []
    n_cat = int(rng.integers(2, 5))
    for j in range(int(rng.integers(0, 3)) + n_cat):
        if j < n_cat:
            if rng.random() < 0.4:
                spec = CategoricalSpec((), encoding="none", unknown="ignore")
            else:
                spec = CategoricalSpec(tuple(PARTS[:4]), unknown="ignore", drop=0 if rng.random() < 0.3 else None)
            features.append(FeatureSpec(f"c{j}", "categorical", 0, categorical=spec))
        else:
            spec = binned_spec(rng) if rng.random() < 0.5 else numeric_spec(rng)
            features.append(FeatureSpec(f"n{j}", "numeric", 0, numeric=spec))
        widths.append(features[-1].width)
    crosses = []
    for k in range(int(rng.integers(1, 4))):
        a, b = rng.choice(n_cat, 2, replace=False)
        keys = {f"{x}|{y}" for x in PARTS for y in PARTS if rng.random() < 0.5} | {"zz|zz", "|"}
        cats = tuple(sorted(keys))
        drop = int(rng.integers(len(cats))) if rng.random() < 0.3 else None
        spec = CategoricalSpec(cats, unknown="ignore", drop=drop)
        crosses.append(CrossSpec(f"x{k}", (f"c{a}", f"c{b}"), 0, spec))
        widths.append(spec.width)
    order = rng.permutation(len(widths))
    starts = np.zeros(len(widths), dtype=int)
    starts[order] = np.concatenate([[0], np.cumsum(np.array(widths)[order])[:-1]])
    features = [replace(f, column=int(starts[i])) for i, f in enumerate(features)]
    crosses = [replace(x, column=int(starts[len(features) + i])) for i, x in enumerate(crosses)]
    return features, crosses, int(sum(widths))


def cross_block(rng: np.random.Generator, features: list[FeatureSpec], n: int, dtype: type = np.float64) -> RowBlock:
    columns = []
    for f in features:
        if f.categorical is not None:
            columns.append(v2bytes.encode([PARTS[i] for i in rng.integers(len(PARTS), size=n)]))
        elif f.numeric.bins is not None:
            columns.append(binned_values(rng, f.numeric, n).astype(dtype))
        else:
            columns.append(numeric_values(rng, f.numeric, n).astype(dtype))
    return RowBlock(n, columns=columns)
