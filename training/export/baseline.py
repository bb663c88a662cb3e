"""Training baseline for drift monitoring: distributions of the raw features and of the scores.

In raw (client) units, because raw values are what the server sees and what drift monitoring
watches. Numeric: quantile-based histogram edges and counts, quantiles, missing rate.
Categorical: category frequencies, unknown and missing rates. Text: the summary of its length in
characters and the rate of empty values. Predictions: label frequencies and probability
histograms, or a value histogram.

``BaselineSketch`` computes it from the training data in one chunked pass with bounded memory
(``compute_baseline`` on the export sample is the fallback): per numeric series a uniform
reservoir of at most ``RESERVOIR`` values (Vitter's algorithm R, vectorised per chunk) gives
``FINE_BINS`` quantile edges and the histogram on them -- the reservoir's own counts, so the
baseline's size as the drift tests see it (``sum(counts) + missing_count``) is the number of
values the histogram really rests on; exact counts, missing rate, mean and extremes over every
row; categories and labels counted exactly; probabilities on ``PROBABILITY_BINS`` fixed bins,
exactly. Memory: 8 bytes x RESERVOIR per numeric feature, whatever the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from onyxserve.repository.manifest import Manifest
from onyxserve.training.export.fold import category_str
from onyxserve.training.recipe.steps import text_str

BINS = 10  # the export sample's histogram (manifests before the training-data baseline)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
FINE_BINS = 500  # quantile bins of a training-data baseline: the KS statistic misses <= 1/500
RESERVOIR = 100_000  # values kept per numeric series (800 kB)
PROBABILITY_BINS = 100  # fixed bins on [0, 1] per class probability
CATEGORY_CAP = 10_000  # distinct values a categorical feature without a table keeps counting
_OTHER = "\x00other"  # the count of every value outside the table (never a real category: NUL)
WEAK_BASELINE_ROWS = 10_000  # fewer baseline rows: export warns (the baseline's noise costs power)


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


def fine_edges(values: np.ndarray, bins: int = FINE_BINS) -> np.ndarray:
    """Quantile edges of the finite ``values`` (deduplicated). A feature with at most ``bins``
    distinct values gets one bin per value instead: the distinct values plus one edge just
    above the largest (the last bin is closed), so that each value, the largest too, has its own
    bin (quantile edges would put a binary feature's 0s and 1s into one bin)."""
    present = values[np.isfinite(values)]
    distinct = np.unique(present)
    if distinct.size <= bins:
        return np.append(distinct, np.nextafter(distinct[-1], np.inf))
    return np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)))


class _Reservoir:
    """A uniform sample of at most ``size`` of the values seen (algorithm R), plus exact
    count, missing count, sum and extremes of every value."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.values = np.empty(size, dtype=np.float64)
        self.seen = self.missing = 0
        self.total = 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        nan = np.isnan(x)
        self.missing += int(nan.sum())
        finite = x[~nan]
        if finite.size:
            self.total += float(finite.sum())
            self.lo, self.hi = min(self.lo, float(finite.min())), max(self.hi, float(finite.max()))
        start = self.seen
        self.seen += len(x)
        fill = max(0, min(self.size - start, len(x)))
        self.values[start : start + fill] = x[:fill]
        rest = x[fill:]
        if len(rest):  # value i (0-based overall) replaces a uniform slot of 0..i when below size
            j = (self.rng.random(len(rest)) * np.arange(start + fill + 1, self.seen + 1)).astype(np.int64)
            keep = j < self.size
            self.values[j[keep]] = rest[keep]  # later values win on a repeated slot, as in order

    def sample(self) -> np.ndarray:
        return self.values[: min(self.seen, self.size)]

    def summary(self, bins: int) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.seen,
                               "missing_rate": self.missing / self.seen if self.seen else 0.0}
        sample = self.sample()
        present = sample[np.isfinite(sample)]
        if present.size == 0:
            return {**out, "edges": [], "counts": [], "quantiles": {}}
        edges = fine_edges(present, bins)
        counts, _ = np.histogram(present, bins=edges)
        mean = self.total / (self.seen - self.missing)
        return {
            **out,
            "edges": _floats(edges),
            "counts": [int(c) for c in counts],
            "missing_count": int(sample.size - present.size),  # in the histogram's own rows
            "histogram_rows": int(sample.size),
            "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES))},
            "mean": mean,
            "std": float(present.std()),
            "min": self.lo,
            "max": self.hi,
        }


class BaselineSketch:
    """The drift baseline of a manifest from training data, chunk by chunk: ``add(frame,
    scores)`` per chunk (raw features in client units, and the pipeline's scores on them), then
    ``result()``, which has the shape ``compute_baseline`` gives."""

    def __init__(self, manifest: Manifest, reservoir: int = RESERVOIR, bins: int = FINE_BINS, seed: int = 0) -> None:
        self.manifest, self.bins = manifest, bins
        rng = np.random.default_rng(seed)
        self.rows = 0
        self.numeric: dict[str, _Reservoir] = {}
        self.text: dict[str, tuple[_Reservoir, list[int]]] = {}
        self.categorical: dict[str, dict[str, int]] = {}
        self._known: dict[str, set[str] | None] = {}
        for f in manifest.features:
            if f.is_text:
                self.text[f.name] = (_Reservoir(reservoir, rng), [0])
            elif f.is_categorical:
                self.categorical[f.name] = {}
                self._known[f.name] = set(f.categorical.categories) if f.categorical.encoding != "none" else None
            else:
                self.numeric[f.name] = _Reservoir(reservoir, rng)
        self.value = _Reservoir(reservoir, rng) if manifest.task == "regression" else None
        labels = tuple(manifest.labels or ())
        self.labels = labels
        self.label_counts = [0] * len(labels)
        self.prob_edges = np.linspace(0.0, 1.0, PROBABILITY_BINS + 1)
        self.prob_counts = np.zeros((len(labels), PROBABILITY_BINS), dtype=np.int64)
        self.prob_sums = np.zeros(len(labels))

    def add(self, frame: pd.DataFrame, scores: dict[str, np.ndarray]) -> None:
        self.rows += len(frame)
        for name, res in self.numeric.items():
            res.add(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))
        for name, (res, empty) in self.text.items():
            texts = [text_str(v) for v in frame[name].tolist()]
            empty[0] += sum(not t for t in texts)
            res.add(np.array([len(t) for t in texts], dtype=np.float64))
        for name, counts in self.categorical.items():
            known = self._known[name]
            chunk = pd.Series([category_str(v) for v in frame[name].tolist()], dtype=object).value_counts()
            for value, c in chunk.items():
                # bounded: values outside the encoder's table are one count, and a cross's own
                # table (none) keeps at most CATEGORY_CAP distinct values
                if known is not None and value not in known and value != "":
                    value = _OTHER
                elif known is None and value not in counts and len(counts) >= CATEGORY_CAP:
                    value = _OTHER
                counts[value] = counts.get(value, 0) + int(c)
        if self.value is not None:
            self.value.add(np.asarray(scores["value"], dtype=np.float64).reshape(-1))
            return
        predicted = np.asarray(scores["label"]).reshape(-1)
        for k, lab in enumerate(self.labels):
            self.label_counts[k] += int((predicted == lab).sum())
        proba = np.asarray(scores["probabilities"], dtype=np.float64)
        for j in range(len(self.labels)):
            self.prob_counts[j] += np.histogram(np.clip(proba[:, j], 0.0, 1.0), bins=self.prob_edges)[0]
            self.prob_sums[j] += float(proba[:, j].sum())

    def result(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for f in self.manifest.features:
            if f.name in self.text:
                res, empty = self.text[f.name]
                features[f.name] = {"type": "text", "empty_rate": empty[0] / self.rows if self.rows else 0.0,
                                    "length": res.summary(self.bins)}
            elif f.name in self.categorical:
                counts = self.categorical[f.name]
                categories = f.categorical.categories
                if f.categorical.encoding == "none":  # read only by a cross: the frequent values
                    categories = tuple(k for k, _ in sorted(((k, v) for k, v in counts.items() if k not in ("", _OTHER)),
                                                            key=lambda kv: -kv[1])[:100])
                features[f.name] = {"type": "categorical", **_categorical_from_counts(counts, categories, self.rows)}
            else:
                features[f.name] = {"type": f.type, **self.numeric[f.name].summary(self.bins)}
        if self.value is not None:
            predictions: dict[str, Any] = {"value": self.value.summary(self.bins)}
        else:
            n = self.rows
            predictions = {
                "label_frequencies": {str(lab): (c / n if n else 0.0) for lab, c in zip(self.labels, self.label_counts)},
                "probability_edges": _floats(self.prob_edges),
                "probabilities": {str(lab): {"mean": float(self.prob_sums[j] / n) if n else 0.0,
                                             "counts": [int(c) for c in self.prob_counts[j]]}
                                  for j, lab in enumerate(self.labels)},
            }
        return {"rows": self.rows, "source": "training data", "fine_bins": self.bins,
                "features": features, "predictions": predictions}


def _categorical_from_counts(counts: dict[str, int], categories: tuple[str, ...], n: int) -> dict[str, Any]:
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
