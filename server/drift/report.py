"""The JSON drift report of one version: PSI per series against the baseline, since the version
loaded and over the recent window (the difference between now and the oldest periodic snapshot
not older than ``window_s``; the report says how many seconds that window really spans)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from onyxserve.server.drift.monitor import DriftMonitor
from onyxserve.server.drift.plan import Series

SMOOTHING = 0.5  # pseudo-count added to every bin of both distributions before PSI


SMOOTHING_NOTE = "additive: 0.5 added to every bin's count in both distributions (Jeffreys prior) before PSI"


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
