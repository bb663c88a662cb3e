"""Training baseline for drift monitoring: distributions of the raw features and of the scores.

Computed on the export sample, in raw (client) units, because raw values are what the server
sees and what drift monitoring watches. Numeric: quantile-based histogram edges and counts,
quantiles, missing rate. Categorical: category frequencies, unknown and missing rates. Text: the
summary of its length in characters and the rate of empty values.
Predictions: label frequencies and probability histograms, or a value histogram.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from onyxserve.repository.manifest import Manifest
from onyxserve.training.export.fold import category_str
from onyxserve.training.recipe.steps import text_str

BINS = 10
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def numeric_summary(values: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Histogram with quantile edges (deduplicated), quantiles and missing rate of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    present = values[np.isfinite(values)]
    out: dict[str, Any] = {"count": n, "missing_rate": float(np.isnan(values).sum() / n) if n else 0.0}
    if present.size == 0:
        return {**out, "edges": [], "counts": [], "quantiles": {}}
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size == 1:  # a constant: one bin around it
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    counts, _ = np.histogram(present, bins=edges)
    return {
        **out,
        "edges": _floats(edges),
        "counts": [int(c) for c in counts],
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES))},
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
    }


def categorical_summary(values: list[str], categories: tuple[str, ...]) -> dict[str, Any]:
    n = len(values)
    counts = pd.Series(values, dtype=object).value_counts()
    known = set(categories)
    freq = {c: int(counts.get(c, 0)) for c in categories}
    missing = int(counts.get("", 0)) if "" not in known else 0
    unknown = int(sum(v for k, v in counts.items() if k not in known and k != ""))
    return {
        "count": n,
        "frequencies": {c: (v / n if n else 0.0) for c, v in freq.items()},
        "counts": freq,
        "missing_rate": missing / n if n else 0.0,
        "unknown_rate": unknown / n if n else 0.0,
    }


def _most_frequent(values: list[str], limit: int = 100) -> tuple[str, ...]:
    counts = pd.Series([v for v in values if v != ""], dtype=object).value_counts()
    return tuple(str(c) for c in counts.index[:limit])


def prediction_summary(task: str, scores: dict[str, np.ndarray], labels: tuple[Any, ...] | None) -> dict[str, Any]:
    if task == "regression":
        return {"value": numeric_summary(np.asarray(scores["value"], dtype=np.float64).reshape(-1))}
    predicted = np.asarray(scores["label"]).tolist()
    n = len(predicted)
    proba = np.asarray(scores["probabilities"], dtype=np.float64)
    label_freq = {str(lab): (sum(1 for p in predicted if p == lab) / n if n else 0.0) for lab in labels or ()}
    fixed_edges = np.linspace(0.0, 1.0, BINS + 1)
    per_class = {}
    for j, lab in enumerate(labels or ()):
        counts, _ = np.histogram(np.clip(proba[:, j], 0.0, 1.0), bins=fixed_edges)
        per_class[str(lab)] = {"mean": float(proba[:, j].mean()) if n else 0.0, "counts": [int(c) for c in counts]}
    return {"label_frequencies": label_freq, "probability_edges": _floats(fixed_edges), "probabilities": per_class}


def compute_baseline(manifest: Manifest, frame: pd.DataFrame, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Baseline of ``frame``'s manifest features (raw values) and of ``scores`` on it."""
    features: dict[str, Any] = {}
    for f in manifest.features:
        series = frame[f.name]
        if f.is_text:  # the length in characters is what a text's drift can be watched by cheaply
            texts = [text_str(v) for v in series.tolist()]
            features[f.name] = {
                "type": "text",
                "empty_rate": sum(not t for t in texts) / len(texts) if texts else 0.0,
                "length": numeric_summary(np.array([len(t) for t in texts], dtype=np.float64)),
            }
        elif f.is_categorical:
            values = [category_str(v) for v in series.tolist()]
            categories = f.categorical.categories
            if f.categorical.encoding == "none":  # read only by a cross: its table is empty, so
                categories = _most_frequent(values)  # watch the sample's own frequent values
            features[f.name] = {"type": "categorical", **categorical_summary(values, categories)}
        else:
            features[f.name] = {
                "type": f.type,
                **numeric_summary(series.to_numpy(dtype=np.float64, na_value=np.nan)),
            }
    return {
        "rows": len(frame),
        "features": features,
        "predictions": prediction_summary(manifest.task, scores, manifest.labels),
    }
