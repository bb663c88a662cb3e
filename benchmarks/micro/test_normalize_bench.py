"""Compiled gather + normalize vs the equivalent numpy code.

Run: ``pytest benchmarks/micro --benchmark-enable`` (summary: ``benchmarks/micro/summarize.py``).

Two models with the shape of the credit-card fraud set: ``fraud`` has 30 numeric features
(``Time``, ``V1``..``V28``, ``Amount``; StandardScaler-like offset/scale, an imputer on six of
them) sent as one float32 matrix per request (form A); ``mixed`` adds two one-hot categorical
features sent per feature (form B, V2 BYTES). Each is gathered from a batch of 1, 8 or 32
single-row requests (the serving case: the batcher hands over whatever queued up) and from one
4096-row request.

Three implementations per case: ``compiled`` (FeatureNormalizer.gather), ``numpy_lean`` (the
fastest plain-numpy code for the same job: concatenate, np.where imputation, one finiteness
check, scale, np.clip, cast; a dict lookup per category) and ``reference``
(core/reference.normalize_reference, the test oracle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from onyxserve.core.normalizer import FeatureNormalizer, FeatureValueError, RowBlock
from onyxserve.core.reference import normalize_reference
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import CategoricalSpec, FeatureSpec, NumericSpec

NAMES = ["Time", *[f"V{i}" for i in range(1, 29)], "Amount"]
IMPUTED = {"V1", "V2", "V3", "V4", "V5", "Amount"}
CATEGORIES = {
    "merchant": tuple(f"mcc-{i:04d}" for i in range(12)),
    "country": ("US", "GB", "FR", "DE", "ES", "IT", "NL", "BE", "PL", "SE", "IE", "PT", "CA", "MX", "BR",
                "JP", "IN", "AU", "ZA", "other"),
}
CASES = [("1x1", 1, 1), ("8x1", 8, 1), ("32x1", 32, 1), ("1x4096", 1, 4096)]  # (name, blocks, rows each)


def raw_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 28)) * np.linspace(2.0, 0.3, 28)
    t = rng.uniform(0.0, 172_800.0, n)
    amount = np.round(rng.lognormal(3.0, 1.4, n), 2)
    x = np.column_stack([t, v, amount])
    imputed = [NAMES.index(c) for c in IMPUTED]
    x[:, imputed] = np.where(rng.random((n, len(imputed))) < 0.01, np.nan, x[:, imputed])
    return x


def numeric_features(rng: np.random.Generator, first_column: int = 0) -> list[FeatureSpec]:
    sample = raw_rows(rng, 10_000)
    mean, std = np.nanmean(sample, axis=0), np.nanstd(sample, axis=0)
    return [
        FeatureSpec(
            name, "numeric", first_column + j,
            numeric=NumericSpec(
                impute=float(mean[j]) if name in IMPUTED else None,
                offset=float(mean[j]),
                scale=float(1.0 / std[j]),
                clip_low=-5.0 if name == "Amount" else -np.inf,
                clip_high=5.0 if name == "Amount" else np.inf,
            ),
        )
        for j, name in enumerate(NAMES)
    ]


@dataclass
class Model:
    features: list[FeatureSpec]
    width: int
    compiled: FeatureNormalizer
    # numpy_lean's parameters: per numeric feature, in their own order
    num_index: np.ndarray  # position in the request's feature list
    num_cols: np.ndarray  # output column
    offset: np.ndarray
    scale: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    impute: np.ndarray  # NaN where there is no imputer: it stays NaN and fails the finite check
    cats: list[tuple[int, int, dict[bytes, int]]]  # (feature index, first column, bytes -> code)


def build(features: list[FeatureSpec]) -> Model:
    width = sum(f.width for f in features)
    num = [(j, f) for j, f in enumerate(features) if f.categorical is None]
    s = [f.numeric for _, f in num]
    return Model(
        features, width, FeatureNormalizer(features, width),
        np.array([j for j, _ in num]), np.array([f.column for _, f in num]),
        np.array([x.offset for x in s]), np.array([x.scale for x in s]),
        np.array([x.clip_low for x in s]), np.array([x.clip_high for x in s]),
        np.array([np.nan if x.impute is None else x.impute for x in s]),
        [(j, f.column, {c.encode(): i for i, c in enumerate(f.categorical.categories)})
         for j, f in enumerate(features) if f.categorical is not None],
    )


def lean_numeric(m: Model, x: np.ndarray) -> np.ndarray:
    x = np.where(np.isnan(x), m.impute, x)
    if not np.isfinite(x).all():
        raise FeatureValueError("?", 0, "is infinite or NaN")
    return np.clip((x - m.offset) * m.scale, m.lo, m.hi).astype(np.float32)


def lean_matrix(m: Model, blocks: list[RowBlock]) -> np.ndarray:
    x = blocks[0].matrix if len(blocks) == 1 else np.concatenate([b.matrix for b in blocks])
    return lean_numeric(m, x)


def lean_columns(m: Model, blocks: list[RowBlock]) -> np.ndarray:
    n = sum(b.n_rows for b in blocks)
    x = np.empty((n, len(m.num_index)))
    for k, j in enumerate(m.num_index):
        x[:, k] = np.concatenate([b.columns[j] for b in blocks])
    out = np.zeros((n, m.width), dtype=np.float32)
    out[:, m.num_cols] = lean_numeric(m, x)
    rows = np.arange(n)
    for j, column, index in m.cats:
        values = [v for b in blocks for v in v2bytes.decode(b.columns[j])]
        if len(values) != n:
            raise FeatureValueError("?", 0, "element count")
        codes = np.fromiter((index[v] for v in values), dtype=np.intp, count=n)  # KeyError = unknown
        out[rows, column + codes] = 1.0
    return out


def fraud_model() -> Model:
    return build(numeric_features(np.random.default_rng(0)))


def mixed_model() -> Model:
    rng = np.random.default_rng(0)
    cats = [
        FeatureSpec(name, "categorical", 30 + sum(len(c) for c in list(CATEGORIES.values())[:k]),
                    categorical=CategoricalSpec(values))
        for k, (name, values) in enumerate(CATEGORIES.items())
    ]
    return build(numeric_features(rng) + cats)


def fraud_blocks(n_blocks: int, rows: int) -> list[RowBlock]:
    rng = np.random.default_rng(1)
    return [RowBlock(rows, matrix=raw_rows(rng, rows).astype(np.float32)) for _ in range(n_blocks)]


def mixed_blocks(m: Model, n_blocks: int, rows: int) -> list[RowBlock]:
    rng = np.random.default_rng(2)
    blocks = []
    for _ in range(n_blocks):
        x = raw_rows(rng, rows).astype(np.float32)
        cats = [v2bytes.encode(rng.choice(values, rows).tolist()) for values in CATEGORIES.values()]
        blocks.append(RowBlock(rows, columns=[*(np.ascontiguousarray(x[:, j]) for j in range(30)), *cats]))
    return blocks


MODELS = {"fraud": (fraud_model, lambda m, b, r: fraud_blocks(b, r), lean_matrix),
          "mixed": (mixed_model, mixed_blocks, lean_columns)}
_cache: dict[str, Model] = {}


@pytest.mark.parametrize("impl", ["compiled", "numpy_lean", "reference"])
@pytest.mark.parametrize("case", [c[0] for c in CASES])
@pytest.mark.parametrize("model", list(MODELS))
def test_gather(benchmark, model, case, impl):
    make_model, make_blocks, lean = MODELS[model]
    m = _cache.get(model) or _cache.setdefault(model, make_model())
    _, n_blocks, rows = next(c for c in CASES if c[0] == case)
    blocks = make_blocks(m, n_blocks, rows)
    fn = {
        "compiled": lambda: m.compiled.gather(blocks),
        "numpy_lean": lambda: lean(m, blocks),
        "reference": lambda: normalize_reference(m.features, m.width, blocks),
    }[impl]
    np.testing.assert_allclose(fn(), m.compiled.gather(blocks), rtol=1e-6, atol=1e-6)  # same job
    benchmark.group = f"{model} {case}"
    benchmark.extra_info.update(model=model, case=case, impl=impl)
    benchmark(fn)
