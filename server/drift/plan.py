"""What one version watches: the series (features and predictions) and their bins, built from
the manifest's training baseline. Numeric: the baseline's histogram edges, plus below / above /
missing slots; categorical: its categories plus one slot for unknown and one for missing values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onyxserve.repository.manifest import Manifest
from onyxserve.server.drift.statistics import CHI2, KS, SeriesBins, numeric_points

BELOW, ABOVE, MISSING, UNKNOWN = "below", "above", "missing", "unknown"
METRIC_BINS = 10  # /metrics sums a numeric series' fine bins into this many runs


@dataclass(frozen=True)
class Series:
    """One distribution: a feature, the labels, one class's probabilities, or the values."""

    kind: str  # "feature" | "prediction"
    name: str  # feature name, or the output: label | probability | value
    type: str  # numeric | binary | categorical | label | probability | value
    bins: tuple[str, ...]
    baseline: tuple[int, ...]  # baseline counts in the same bins
    cls: str = ""  # probability: the class
    offset: int = -1  # into the version's count vector
    edges: tuple[float, ...] = ()  # numeric: the exact bin edges

    @property
    def test(self) -> str:
        """Categories and labels have no order: chi-square; everything numeric: KS."""
        return CHI2 if self.type in ("categorical", "label") else KS

    def test_bins(self) -> SeriesBins:
        points = numeric_points(self.edges, below_above_missing=self.type != "probability") if self.edges else ()
        return SeriesBins(self.offset, self.baseline, self.test, points)

    def groups(self) -> list[tuple[str, int, int]]:
        """The slots Prometheus exports, (label, start, stop): each slot while there are few; a
        numeric series' fine bins summed into METRIC_BINS runs of consecutive bins ("[a, b)")
        beside below / above / missing, so that /metrics keeps ~a dozen series per feature."""
        inner = len(self.edges) - 1
        if not self.edges or inner <= METRIC_BINS:
            return [(b, k, k + 1) for k, b in enumerate(self.bins)]
        first = 0 if self.type == "probability" else 1  # probabilities have no below slot
        cuts = np.linspace(0, inner, METRIC_BINS + 1).round().astype(int)
        texts = _edge_texts(np.asarray(self.edges)[cuts])
        out = [(BELOW, 0, 1)] if first else []
        for g in range(METRIC_BINS):
            close = "]" if g == METRIC_BINS - 1 else ")"
            out.append((f"[{texts[g]}, {texts[g + 1]}{close}", first + int(cuts[g]), first + int(cuts[g + 1])))
        if first:
            out += [(ABOVE, inner + 1, inner + 2), (MISSING, inner + 2, inner + 3)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "type": self.type, "class": self.cls,
                "bins": list(self.bins), "offset": self.offset,
                "groups": [list(g) for g in self.groups()]}


def _edge_texts(edges: np.ndarray) -> list[str]:
    """The edges with the fewest significant digits (at least 4) that keep them all distinct:
    readable labels ("[0.3, 0.4)") that never collide; the report also carries the exact edges."""
    for digits in range(4, 18):
        texts = [f"{float(x):.{digits}g}" for x in edges]
        if len(set(texts)) == len(texts):
            return texts
    return [repr(float(x)) for x in edges]


def numeric_bins(edges: np.ndarray) -> tuple[str, ...]:
    """Labels of the sketch slots: below, the histogram bins (the last one closed), above, missing."""
    e = _edge_texts(edges)
    inner = [f"[{a}, {b})" for a, b in zip(e[:-1], e[1:])]
    inner[-1] = inner[-1][:-1] + "]"
    return (BELOW, *inner, ABOVE, MISSING)


def numeric_slots(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Slot of each value as the compiled sketch counts it (numpy.histogram's bins, last closed)."""
    idx = np.searchsorted(edges, x, side="right")
    idx[x == edges[-1]] = len(edges) - 1
    idx[np.isnan(x)] = len(edges) + 1
    return idx


def _rounded(rate: float, n: int) -> int:
    return int(round(float(rate) * n))


def _numeric_baseline(summary: Mapping[str, Any]) -> tuple[np.ndarray, tuple[int, ...]] | str:
    edges = np.asarray(summary.get("edges") or [], dtype=np.float64)
    counts = [int(c) for c in summary.get("counts") or []]
    if len(edges) < 2 or len(counts) != len(edges) - 1:
        return "the baseline has no histogram (no finite values in the training sample)"
    if not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
        return "the baseline's edges are not strictly increasing finite numbers"
    if "missing_count" in summary:  # a training-data baseline: missing among the histogram's rows
        missing = int(summary["missing_count"])
    else:  # an export-sample baseline (older manifests): the rate over the sample
        missing = _rounded(summary.get("missing_rate", 0.0), int(summary.get("count", 0)))
    return edges, (0, *counts, 0, missing)


@dataclass
class DriftPlan:
    """What one version watches, built from its manifest's baseline."""

    sketch_edges: dict[str, np.ndarray | None] = field(default_factory=dict)
    features: list[Series] = field(default_factory=list)  # offsets set once the normalizer exists
    predictions: list[Series] = field(default_factory=list)
    unmonitored: dict[str, str] = field(default_factory=dict)  # name -> why not
    prediction_edges: np.ndarray | None = None  # probability or value edges
    labels: tuple[Any, ...] = ()

    @property
    def prediction_size(self) -> int:
        return sum(len(s.bins) for s in self.predictions)


def plan_drift(manifest: Manifest) -> DriftPlan:
    """Sketch edges and series for ``manifest``; never raises: what cannot be watched is listed
    in ``unmonitored`` with the reason."""
    plan = DriftPlan()
    baseline = manifest.baseline or {}
    base_features = baseline.get("features") or {}
    for f in manifest.features:
        base = base_features.get(f.name)
        if base is None:
            plan.unmonitored[f.name] = "no baseline for this feature in the manifest"
        elif f.is_text:
            plan.unmonitored[f.name] = "text features are not counted (the baseline has their length only)"
        elif f.categorical is not None:
            categories = list(f.categorical.categories)
            counts = base.get("counts") or {}
            if f.categorical.encoding == "none" or list(counts) != categories:
                plan.unmonitored[f.name] = "the baseline's categories differ from the category table"
                continue
            unknown = UNKNOWN if UNKNOWN not in categories else f"__{UNKNOWN}__"
            missing = MISSING if MISSING not in categories else f"__{MISSING}__"
            n = int(base.get("count", 0))
            # the compiled sketch's slots: the categories, unknown, then missing (empty values)
            plan.sketch_edges[f.name] = None
            plan.features.append(Series("feature", f.name, "categorical", (*categories, unknown, missing),
                                        (*(int(counts[c]) for c in categories),
                                         _rounded(base.get("unknown_rate", 0.0), n),
                                         _rounded(base.get("missing_rate", 0.0), n))))
        else:
            parsed = _numeric_baseline(base)
            if isinstance(parsed, str):
                plan.unmonitored[f.name] = parsed
                continue
            edges, counts = parsed
            plan.sketch_edges[f.name] = edges
            plan.features.append(Series("feature", f.name, f.type, numeric_bins(edges), counts,
                                        edges=tuple(edges.tolist())))
    _plan_predictions(plan, manifest, baseline.get("predictions") or {})
    return plan


def _plan_predictions(plan: DriftPlan, manifest: Manifest, base: Mapping[str, Any]) -> None:
    if manifest.task == "regression":
        parsed = _numeric_baseline(base.get("value") or {})
        if isinstance(parsed, str):
            plan.unmonitored["value"] = parsed
            return
        plan.prediction_edges, counts = parsed
        plan.predictions.append(Series("prediction", "value", "value", numeric_bins(parsed[0]), counts,
                                       edges=tuple(parsed[0].tolist())))
        return
    labels = tuple(manifest.labels or ())
    freq = base.get("label_frequencies") or {}
    edges = np.asarray(base.get("probability_edges") or [], dtype=np.float64)
    per_class = base.get("probabilities") or {}
    rows = int((manifest.baseline or {}).get("rows", 0))
    if not labels or set(freq) != {str(v) for v in labels} or len(edges) < 2:
        plan.unmonitored["label"] = plan.unmonitored["probability"] = "no prediction baseline in the manifest"
        return
    plan.labels = labels
    plan.predictions.append(Series("prediction", "label", "label", tuple(str(v) for v in labels),
                                   tuple(_rounded(freq[str(v)], rows) for v in labels)))
    plan.prediction_edges = edges
    bins = numeric_bins(edges)[1:-2]  # probabilities are clipped into [0, 1]: no below/above/missing
    for v in labels:
        counts = (per_class.get(str(v)) or {}).get("counts") or [0] * len(bins)
        plan.predictions.append(Series("prediction", "probability", "probability", bins,
                                       tuple(int(c) for c in counts), cls=str(v), edges=tuple(edges.tolist())))
