"""Drift monitoring: live feature and prediction distributions against the training baseline.

Counting. Each served version turns its manifest baseline into sketch edges (numeric: the
baseline's quantile edges; categorical: its categories) and hands them to ``load_version``, so
the compiled gather pass counts the raw feature values of every batch it normalizes (no second
pass). Predictions are counted per batch with numpy: labels, and probabilities on the baseline's
fixed edges (classifiers), or values on the baseline's value edges (regression).

Where counts live. One int64 vector per loaded version: the normalizer's sketch slots, then the
prediction slots. With one process it is private memory. In multiprocess mode (``--workers N``,
PROMETHEUS_MULTIPROC_DIR set) it is a file mapped into the worker (``<dir>/drift/*.i64``) next
to a JSON layout, so any worker can read every worker's counts at scrape or report time and sum
them: no per-batch Prometheus call, no flushing, nothing stale. A worker deletes its files when
it unloads the version; files of a worker that died are still summed (counter semantics).

Writers: only the model's batcher writes, one batch at a time (its single runner task awaits
each batch, inline or on the compute thread, before taking the next), so plain integers need no
lock. Readers may see one batch half counted across features; each slot is one aligned int64.

Report: counts since the version loaded, plus a recent window: the difference between now and
the oldest periodic snapshot (every ``snapshot_s``) not older than ``window_s``; the report says
how many seconds that window really spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import time
from bisect import bisect_right
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onyxserve.core.manifest import Manifest

log = logging.getLogger(__name__)

SMALL_BATCH = 4  # up to this many rows, predictions are counted without numpy
SMOOTHING = 0.5  # pseudo-count added to every bin of both distributions before PSI
SMOOTHING_NOTE = "additive: 0.5 added to every bin's count in both distributions (Jeffreys prior) before PSI"
BELOW, ABOVE, MISSING, UNKNOWN = "below", "above", "missing", "unknown"


@dataclass(frozen=True)
class DriftSettings:
    enabled: bool = True
    psi_threshold: float = 0.2  # a series whose PSI exceeds this is flagged as drifted
    min_rows: int = 100  # fewer rows than this: PSI is reported, never flagged
    window_s: float = 900.0  # the recent window's length
    snapshot_s: float = 60.0  # how often the window's snapshots are taken
    directory: Path | None = None  # multiprocess: where every worker's count files live

    @classmethod
    def from_environment(cls, **values: Any) -> DriftSettings:
        """With PROMETHEUS_MULTIPROC_DIR set (``--workers N``), counts go to files there."""
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        return cls(**values, directory=Path(shared) / "drift" if shared else None)


# ---- layout: what each slot of the count vector means ----------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "type": self.type, "class": self.cls,
                "bins": list(self.bins), "offset": self.offset}


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
            n = int(base.get("count", 0))
            other = _rounded(base.get("unknown_rate", 0.0) + base.get("missing_rate", 0.0), n)
            plan.sketch_edges[f.name] = None
            plan.features.append(Series("feature", f.name, "categorical", (*categories, unknown),
                                        (*(int(counts[c]) for c in categories), other)))
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


# ---- storage -------------------------------------------------------------------------------


class CountStore:
    """A version's count vector: private memory, or a shared file plus its JSON layout."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.array: np.ndarray = np.zeros(0, dtype=np.int64)
        self.path: Path | None = None

    def allocate(self, size: int) -> np.ndarray:
        if self.directory is None or size == 0:
            self.array = np.zeros(size, dtype=np.int64)
            return self.array
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.i64"
        with open(self.path, "wb") as fh:
            fh.truncate(size * 8)  # zeros
        self.array = np.memmap(self.path, dtype=np.int64, mode="r+", shape=(size,))
        return self.array

    def publish(self, layout: dict[str, Any]) -> None:
        """Write the layout beside the counts (atomically): readers only read published files."""
        if self.path is None:
            return
        target = self.path.with_suffix(".json")
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(layout), encoding="utf-8")
        os.replace(tmp, target)

    def close(self) -> None:
        if self.path is not None:
            for p in (self.path.with_suffix(".json"), self.path):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            self.path = None


def shared_sources(directory: Path) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """(layout, counts) of every published count file in ``directory`` (every worker's)."""
    try:
        names = sorted(directory.glob("*.json"))
    except OSError:
        return
    for meta in names:
        try:
            layout = json.loads(meta.read_text(encoding="utf-8"))
            counts = np.fromfile(meta.with_suffix(".i64"), dtype=np.int64)
        except (OSError, ValueError):  # unloaded between the listing and the read
            continue
        if len(counts) == layout.get("size"):
            yield layout, counts


# ---- the per-version monitor --------------------------------------------------------------------

# the monitors of this process (single-process export reads them; multiprocess reads files)
LIVE: set[DriftMonitor] = set()


class DriftMonitor:
    """Counts of one loaded version; built in two steps around ``load_version``:
    ``sketch_edges(manifest)`` then ``allocate(n)`` (both called by the loader), then ``bind``."""

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.plan = DriftPlan()
        self.manifest: Manifest | None = None
        self._store = CountStore(settings.directory)
        self._features_size = 0
        self._pred: np.ndarray = np.zeros(0, dtype=np.int64)
        self._snapshots: deque[tuple[float, np.ndarray]] = deque()
        self._task: asyncio.Task | None = None
        self.loaded_at = time.time()
        self.digest = ""
        self._layout: dict[str, Any] = {}

    # -- loading
    def sketch_edges(self, manifest: Manifest) -> dict[str, np.ndarray | None]:
        self.manifest = manifest
        self.plan = plan_drift(manifest)
        return self.plan.sketch_edges

    def allocate(self, n: int) -> np.ndarray:
        self._features_size = int(n)
        return self._store.allocate(n + self.plan.prediction_size)

    def bind(self, sketch_counts: Mapping[str, np.ndarray]) -> None:
        """Record where each series lives (the normalizer's views into our vector), publish."""
        base = self._store.array
        start = base.ctypes.data if len(base) else 0
        features = []
        for s in self.plan.features:
            view = sketch_counts[s.name]
            assert len(view) == len(s.bins), f"feature '{s.name}': {len(view)} slots for {len(s.bins)} bins"
            features.append(Series(**{**s.__dict__, "offset": int(view.ctypes.data - start) // 8}))
        offset, predictions = self._features_size, []
        for s in self.plan.predictions:
            predictions.append(Series(**{**s.__dict__, "offset": offset}))
            offset += len(s.bins)
        self.plan.features, self.plan.predictions = features, predictions
        self._pred = base[self._features_size :]
        # per-batch constants of ``observe``
        labels = self.plan.labels
        self._label_is_index = bool(labels) and all(
            isinstance(v, int) and not isinstance(v, bool) and v == k for k, v in enumerate(labels))
        if self.plan.prediction_edges is not None and labels:
            edges = self.plan.prediction_edges
            self._inner_edges = edges[1:-1].copy()
            self._class_offsets = len(labels) + np.arange(len(labels)) * (len(edges) - 1)
            self._inner_list = self._inner_edges.tolist()
            self._offsets_list = self._class_offsets.tolist()
            self._label_slot = {value: k for k, value in enumerate(labels)}
        self._layout = layout = self._describe()
        self.digest = layout["digest"]
        self._store.publish(layout)
        self._snapshots.append((time.monotonic(), np.zeros(len(base), dtype=np.int64)))

    def layout(self) -> dict[str, Any]:
        return self._layout

    def _describe(self) -> dict[str, Any]:
        series = [s.to_json() for s in (*self.plan.features, *self.plan.predictions)]
        m = self.manifest
        digest = hashlib.sha256(json.dumps([m.model.sha256, series]).encode()).hexdigest()[:16]
        return {"model": m.name, "version": m.version, "pid": os.getpid(), "loaded_unix": self.loaded_at,
                "size": len(self._store.array), "digest": digest, "series": series}

    # -- the hot path (the batcher's runner only)
    def observe(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Count one batch's predictions (before any decision threshold: the baseline's labels
        are the graph's own)."""
        if not len(self._pred):
            return
        preds = self.plan.predictions
        if preds[0].name == "value":
            x = np.asarray(outputs["value"], dtype=np.float64).reshape(-1)
            size = len(preds[0].bins)
            self._pred[:size] += np.bincount(numeric_slots(x, self.plan.prediction_edges), minlength=size)
            return
        labels = outputs["label"].reshape(-1)
        if len(labels) <= SMALL_BATCH:  # one-row requests: numpy's per-call cost dominates
            self._observe_rows(labels, outputs["probabilities"])
            return
        if self._label_is_index:  # labels 0..C-1: the label is its own slot
            idx = labels
        else:
            idx = np.full(len(labels), len(self._pred), dtype=np.intp)  # past the end: not counted
            for k, value in enumerate(self.plan.labels):
                idx[labels == value] = k
        # numpy.histogram's bins (last closed) on the interior edges; a probability outside [0, 1]
        # lands in the first or last bin, as the baseline's clip put it
        slots = np.searchsorted(self._inner_edges, outputs["probabilities"], side="right")
        slots += self._class_offsets
        counts = np.bincount(np.concatenate((idx, slots.reshape(-1))), minlength=len(self._pred) + 1)
        self._pred += counts[: len(self._pred)]

    def _observe_rows(self, labels: np.ndarray, probabilities: np.ndarray) -> None:
        """``observe`` for a few rows in plain Python: the same slots (bisect_right is
        searchsorted(side='right')), a quarter of the cost for one row."""
        pred, edges, offsets, index = self._pred, self._inner_list, self._offsets_list, self._label_slot
        for label, row in zip(labels.tolist(), probabilities.tolist()):
            k = index.get(label)
            if k is not None:
                pred[k] += 1
            for j, p in enumerate(row):
                pred[offsets[j] + bisect_right(edges, p)] += 1

    # -- reading
    def totals(self) -> tuple[np.ndarray, list[dict[str, int]]]:
        """Counts since load summed over every worker serving this version, and each worker's
        rows (``pid``, ``rows``)."""
        directory = self.settings.directory
        if directory is None or self._store.path is None:
            counts = np.array(self._store.array, dtype=np.int64)
            return counts, [{"pid": os.getpid(), "rows": self._rows(counts)}]
        total = np.zeros(len(self._store.array), dtype=np.int64)
        sources = []
        for layout, counts in shared_sources(directory):
            if layout.get("digest") == self.digest:
                total += counts
                sources.append({"pid": int(layout["pid"]), "rows": self._rows(counts)})
        return total, sources

    def _rows(self, counts: np.ndarray) -> int:
        series = self.series()
        return int(counts[series[0].offset : series[0].offset + len(series[0].bins)].sum()) if series else 0

    def snapshot(self) -> None:
        now = time.monotonic()
        self._snapshots.append((now, self.totals()[0]))
        while len(self._snapshots) > 1 and now - self._snapshots[1][0] >= self.settings.window_s:
            self._snapshots.popleft()  # the next one still covers the window

    def window_base(self) -> tuple[float, np.ndarray]:
        """The oldest snapshot not older than the window: (its age in seconds, its counts)."""
        now = time.monotonic()
        for taken, counts in self._snapshots:
            if now - taken <= self.settings.window_s:
                return now - taken, counts
        taken, counts = self._snapshots[-1]
        return now - taken, counts

    def start(self) -> None:
        LIVE.add(self)
        self._task = asyncio.get_running_loop().create_task(self._snapshot_loop(), name="drift-snapshots")

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_s)
            try:
                self.snapshot()
            except Exception:  # noqa: BLE001 - a failed snapshot must not end the series
                log.exception("drift snapshot failed")

    def close(self) -> None:
        LIVE.discard(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._store.close()

    def series(self) -> list[Series]:
        return [*self.plan.features, *self.plan.predictions]


def local_sources() -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    for monitor in list(LIVE):
        if monitor.manifest is not None:
            yield monitor.layout(), monitor._store.array


# ---- PSI and the report ----------------------------------------------------------------------


def psi(live: np.ndarray, baseline: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """Population stability index of ``live`` against ``baseline`` counts (smoothed)."""
    p = np.asarray(live, dtype=np.float64) + smoothing
    q = np.asarray(baseline, dtype=np.float64) + smoothing
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def _rates(counts: np.ndarray) -> list[float]:
    n = counts.sum()
    return (counts / n).tolist() if n else [0.0] * len(counts)


def series_report(s: Series, counts: np.ndarray, threshold: float, min_rows: int) -> dict[str, Any]:
    live = counts[s.offset : s.offset + len(s.bins)]
    base = np.asarray(s.baseline, dtype=np.int64)
    rows = int(live.sum())
    value = psi(live, base) if rows else None
    out: dict[str, Any] = {
        "name": s.name if not s.cls else f"{s.name}[{s.cls}]", "type": s.type, "rows": rows,
        "psi": value, "drifted": bool(value is not None and rows >= min_rows and value > threshold),
        "bins": list(s.bins), "live_counts": live.tolist(), "baseline_counts": base.tolist(),
        "live": _rates(live), "baseline": _rates(base),
    }
    if s.cls:
        out["class"] = s.cls
    if s.edges:
        out["edges"] = list(s.edges)
    if s.type == "categorical":  # the sketch counts a missing (empty) value as unknown
        out["unknown_rate"], out["baseline_unknown_rate"] = out["live"][-1], out["baseline"][-1]
    elif s.kind == "feature" or s.type == "value":
        out["missing_rate"], out["baseline_missing_rate"] = out["live"][-1], out["baseline"][-1]
        out["outside_rate"] = (out["live"][0] + out["live"][-2]) if rows else 0.0
    return out


def _view(monitor: DriftMonitor, counts: np.ndarray, threshold: float, seconds: float) -> dict[str, Any]:
    min_rows = monitor.settings.min_rows
    features = [series_report(s, counts, threshold, min_rows) for s in monitor.plan.features]
    predictions = [series_report(s, counts, threshold, min_rows) for s in monitor.plan.predictions]
    rank = lambda r: -r["psi"] if r["psi"] is not None else math.inf  # noqa: E731
    features.sort(key=rank)
    return {
        "seconds": round(seconds, 3),
        "rows": max((r["rows"] for r in (*features, *predictions)), default=0),
        "drifted_features": [r["name"] for r in features if r["drifted"]],
        "drifted_predictions": [r["name"] for r in predictions if r["drifted"]],
        "features": features,
        "predictions": predictions,
    }


def build_report(monitor: DriftMonitor, psi_threshold: float | None = None) -> dict[str, Any]:
    """The JSON drift report of one version: since load and the recent window."""
    threshold = monitor.settings.psi_threshold if psi_threshold is None else psi_threshold
    total, sources = monitor.totals()
    age, base = monitor.window_base()
    window = np.maximum(total - base, 0)  # a worker's file gone since the snapshot: never negative
    m = monitor.manifest
    return {
        "model": m.name, "version": m.version,
        "psi_threshold": threshold, "min_rows": monitor.settings.min_rows, "smoothing": SMOOTHING_NOTE,
        "loaded_unix": monitor.loaded_at, "workers": len(sources), "sources": sources,
        "baseline_rows": int((m.baseline or {}).get("rows", 0)),
        "since_load": _view(monitor, total, threshold, time.time() - monitor.loaded_at),
        "window": {"configured_seconds": monitor.settings.window_s,
                   **_view(monitor, window, threshold, age)},
        "unmonitored": dict(monitor.plan.unmonitored),
    }


# ---- Prometheus export (read at scrape time) --------------------------------------------------


class DriftCollector:
    """Exports every version's counts as counters, read when scraped: this process's monitors,
    or, in multiprocess mode, every worker's count files summed by label set."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory

    def describe(self) -> list:
        return []  # the families depend on the models loaded: collected at scrape time only

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        features: dict[tuple[str, ...], int] = {}
        predictions: dict[tuple[str, ...], int] = {}
        sources = shared_sources(self.directory) if self.directory is not None else local_sources()
        for layout, counts in sources:
            model, version = layout["model"], layout["version"]
            for s in layout["series"]:
                values = counts[s["offset"] : s["offset"] + len(s["bins"])].tolist()
                for label, value in zip(s["bins"], values):
                    if s["kind"] == "feature":
                        key = (model, version, s["name"], label)
                        features[key] = features.get(key, 0) + value
                    else:
                        key = (model, version, s["name"], s["class"], label)
                        predictions[key] = predictions.get(key, 0) + value
        f = CounterMetricFamily("onyxserve_drift_feature_rows",
                                "Rows by the bin of a raw feature value, since the version loaded (drift).",
                                labels=("model", "version", "feature", "bin"))
        for key, value in features.items():
            f.add_metric(key, value)
        p = CounterMetricFamily("onyxserve_drift_prediction_rows",
                                "Rows by predicted label, probability bin (per class) or value bin (drift).",
                                labels=("model", "version", "output", "class", "bin"))
        for key, value in predictions.items():
            p.add_metric(key, value)
        yield f
        yield p
