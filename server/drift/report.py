"""The JSON drift report of one version, since the version loaded and over the recent window (the
difference between now and the oldest periodic snapshot not older than ``window_s``; the report
says how many seconds that window really spans).

Per series: the two-sample test against the baseline (KS for numeric series, chi-square for
categories and labels; ``statistics.py`` says how each equals scipy's), its p-value and the
Benjamini-Hochberg adjusted one, the Jensen-Shannon and Wasserstein distances, the rows and the
rows the test needs, and ``drifted``. PSI stays as a secondary field (``psi``,
``psi_over_threshold``), no longer the flag.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from onyxserve.server.drift.monitor import DriftMonitor
from onyxserve.server.drift.plan import Series
from onyxserve.server.drift.statistics import CHI2, PSI_SMOOTHING, Results

SMOOTHING = PSI_SMOOTHING  # pseudo-count added to every bin of both distributions before PSI
SMOOTHING_NOTE = "additive: 0.5 added to every bin's count in both distributions (Jeffreys prior) before PSI"
CORRECTION = "benjamini-hochberg across the version's series (features and predictions) in each view"
TESTS = {"ks": "two-sample Kolmogorov-Smirnov on the baseline's bins (missing sorts last), p from kstwo(n m/(n+m))",
         "chi2": "Pearson chi-square of homogeneity, live vs baseline, cells expecting < 5 pooled (Cochran)"}


def psi(live: np.ndarray, baseline: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """Population stability index of ``live`` against ``baseline`` counts (smoothed)."""
    p = np.asarray(live, dtype=np.float64) + smoothing
    q = np.asarray(baseline, dtype=np.float64) + smoothing
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def _rates(counts: np.ndarray) -> list[float]:
    n = counts.sum()
    return (counts / n).tolist() if n else [0.0] * len(counts)


def _number(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)  # JSON has no NaN


def series_report(s: Series, counts: np.ndarray, results: Results, i: int, psi_threshold: float) -> dict[str, Any]:
    live = counts[s.offset : s.offset + len(s.bins)]
    base = np.asarray(s.baseline, dtype=np.int64)
    rows = int(results.rows[i])
    psi_value = _number(results.psi[i])
    out: dict[str, Any] = {
        "name": s.name if not s.cls else f"{s.name}[{s.cls}]", "type": s.type, "rows": rows,
        "test": results.test[i], "statistic": _number(results.statistic[i]),
        "p_value": _number(results.p_value[i]), "q_value": _number(results.q_value[i]),
        "js_distance": _number(results.js_distance[i]), "min_rows": int(results.min_rows[i]),
        "drifted": bool(results.drifted[i]),
        "psi": psi_value, "psi_over_threshold": bool(psi_value is not None and psi_value > psi_threshold),
        "bins": list(s.bins), "live_counts": live.tolist(), "baseline_counts": base.tolist(),
        "live": _rates(live), "baseline": _rates(base),
    }
    if results.test[i] == CHI2:
        out["dof"] = int(results.dof[i])
    else:
        out["wasserstein"] = _number(results.wasserstein[i])
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


def _rank(r: dict[str, Any]) -> tuple[float, float]:
    """The most significant first; untested series last, by PSI among themselves."""
    p = r["p_value"]
    return (p if p is not None else math.inf, -(r["statistic"] or 0.0))


def _view(monitor: DriftMonitor, counts: np.ndarray, psi_threshold: float, seconds: float) -> dict[str, Any]:
    results = monitor.tests.run(counts)
    nf = len(monitor.plan.features)
    features = [series_report(s, counts, results, i, psi_threshold) for i, s in enumerate(monitor.plan.features)]
    predictions = [series_report(s, counts, results, nf + i, psi_threshold)
                   for i, s in enumerate(monitor.plan.predictions)]
    features.sort(key=_rank)
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
        "alpha": monitor.settings.alpha, "correction": CORRECTION, "tests": TESTS,
        "min_rows": monitor.settings.min_rows,
        "psi_threshold": threshold, "smoothing": SMOOTHING_NOTE,
        "loaded_unix": monitor.loaded_at, "workers": len(sources), "sources": sources,
        "baseline_rows": int((m.baseline or {}).get("rows", 0)),
        "since_load": _view(monitor, total, threshold, time.time() - monitor.loaded_at),
        "window": {"configured_seconds": monitor.settings.window_s,
                   **_view(monitor, window, threshold, age)},
        "unmonitored": dict(monitor.plan.unmonitored),
    }
