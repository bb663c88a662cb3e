"""A recipe Plan -> an unfitted scikit-learn ColumnTransformer (see ``recipe.py`` for the format)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from onyxserve.training.datasource.schema import AttributeType
from onyxserve.training.recipe.spec import MISSING_CATEGORY, Plan, Step
from onyxserve.training.recipe.steps import (
    CartesianJoiner,
    FrequentOneHotEncoder,
    OutlierClipper,
    TextCleaner,
)
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, MinMaxScaler, StandardScaler

_TOKENS = r"(?u)\b\w+\b"  # one-letter words count too
_TOKENS_AND_PUNCT = r"(?u)\b\w+\b|[^\w\s]"


def build_transformer(plan: Plan, *, seed: int = 0) -> ColumnTransformer:
    groups: dict[str, list[str]] = {}
    for name, steps in plan.steps.items():
        kind = plan.types[name]
        if kind is AttributeType.TEXT:
            groups.setdefault(f"text:{name}", []).append(name)
            continue
        key = json.dumps([kind.value, [s.to_dict() for s in steps]], sort_keys=True)
        groups.setdefault(key, []).append(name)
    transformers: list[tuple[str, Any, Any]] = []
    counters: dict[str, int] = {}
    for key, names in groups.items():
        first = names[0]
        kind = plan.types[first]
        steps = plan.steps[first]
        if kind is AttributeType.TEXT:
            # a vectorizer reads one column as 1-D: select it by name, not by list
            transformers.append((f"text_{first}", _text_pipeline(steps), first))
            continue
        label = kind.value.lower()
        counters[label] = counters.get(label, 0) + 1
        transformers.append((f"{label}_{counters[label]}", _pipeline(steps, kind, seed), names))
    for cross in plan.cartesian:
        encoder = FrequentOneHotEncoder(min_count=cross.min_count, max_categories=cross.max_categories)
        transformers.append(
            (
                f"cartesian_{cross.name}",
                Pipeline([("join", CartesianJoiner()), ("onehot", encoder)]),
                list(cross.columns),
            )
        )
    # dense output: HistGradientBoosting takes no sparse input, and the blocks here are small
    return ColumnTransformer(
        transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=True
    )


def _pipeline(steps: tuple[Step, ...], kind: AttributeType, seed: int) -> Pipeline:
    out: list[tuple[str, Any]] = []
    categorical = kind is AttributeType.CATEGORICAL
    for step in steps:
        o = step.options
        if step.kind == "impute":
            strategy = o.get("strategy") or ("constant" if categorical else "median")
            fill = (
                o.get("value", MISSING_CATEGORY if categorical else 0.0) if strategy == "constant" else None
            )
            out.append(
                ("impute", SimpleImputer(strategy=strategy, fill_value=fill, keep_empty_features=True))
            )
        elif step.kind == "clip":
            out.append(
                (
                    "clip",
                    OutlierClipper(o["method"], o.get("low", 0.01), o.get("high", 0.99), o.get("k", 1.5)),
                )
            )
        elif step.kind == "normalize":
            out.append(("normalize", StandardScaler() if o["method"] == "standard" else MinMaxScaler()))
        elif step.kind == "quantile_bin":
            out.append(
                (
                    "quantile_bin",
                    KBinsDiscretizer(
                        n_bins=o["bins"], encode="onehot-dense", strategy="quantile", random_state=seed
                    ),
                )
            )
        elif step.kind == "onehot":
            out.append(
                (
                    "onehot",
                    FrequentOneHotEncoder(min_count=o["min_count"], max_categories=o["max_categories"]),
                )
            )
    if not out:
        out.append(("passthrough", "passthrough"))
    return Pipeline(out)


def _text_pipeline(steps: tuple[Step, ...]) -> Pipeline:
    o = next(s for s in steps if s.kind == "text").options
    vectorizer = TfidfVectorizer if o["weighting"] == "tfidf" else CountVectorizer
    return Pipeline(
        [
            ("clean", TextCleaner(lowercase=o["lowercase"], no_punct=o["no_punct"])),
            (
                o["weighting"],
                vectorizer(
                    lowercase=False,
                    token_pattern=_TOKENS if o["no_punct"] else _TOKENS_AND_PUNCT,
                    ngram_range=tuple(o["ngrams"]),
                    max_features=o["max_features"],
                    dtype=np.float64,
                ),
            ),
        ]
    )
