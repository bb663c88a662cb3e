"""The JSON drift report of one version: since the version loaded (``since_load``), the last
closed tumbling window (``window``: each window is tested once, on its own rows), the open one
(``current_window``, partial), and the last closed windows in brief (``windows``), each with its
span (unix start and end, seconds) and rows. Each series' bins, edges and baseline counts are
the same in every view: they are in ``since_load`` only (hundreds of bins per feature).

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
from onyxserve.server.drift.monitor import DriftMonitor, Window
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


STATIC = ("bins", "edges", "baseline_counts", "baseline")  # the same in every view: since_load only


def series_report(s: Series, counts: np.ndarray, results: Results, i: int, psi_threshold: float,
                  static: bool = True) -> dict[str, Any]:
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
    if s.type == "categorical":  # slots: the categories, unknown, missing
        out["unknown_rate"], out["baseline_unknown_rate"] = out["live"][-2], out["baseline"][-2]
        out["missing_rate"], out["baseline_missing_rate"] = out["live"][-1], out["baseline"][-1]
    elif s.kind == "feature" or s.type == "value":
        out["missing_rate"], out["baseline_missing_rate"] = out["live"][-1], out["baseline"][-1]
        out["outside_rate"] = (out["live"][0] + out["live"][-2]) if rows else 0.0
    if not static:  # a window's view: hundreds of bins, edges and baseline counts once are enough
        for key in STATIC:
            out.pop(key, None)
    return out


def _rank(r: dict[str, Any]) -> tuple[float, float]:
    """The most significant first; untested series last, by PSI among themselves."""
    p = r["p_value"]
    return (p if p is not None else math.inf, -(r["statistic"] or 0.0))


def _view(monitor: DriftMonitor, counts: np.ndarray, psi_threshold: float, seconds: float,
          results: Results | None = None, static: bool = False) -> dict[str, Any]:
    results = monitor.tests.run(counts) if results is None else results
    nf = len(monitor.plan.features)
    features = [series_report(s, counts, results, i, psi_threshold, static)
                for i, s in enumerate(monitor.plan.features)]
    predictions = [series_report(s, counts, results, nf + i, psi_threshold, static)
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


def _span(w: Window, closed: bool, now: float) -> dict[str, Any]:
    end = w.end_unix if closed else now
    return {"index": w.index, "closed": closed, "start_unix": round(w.start_unix, 3),
            "end_unix": round(end, 3), "seconds": round(end - w.start_unix, 3)}


def _brief(monitor: DriftMonitor, w: Window) -> dict[str, Any]:
    """A closed window in a few numbers per series: enough to follow a feature over time."""
    r = monitor.window_results(w)
    names = [s.name if not s.cls else f"{s.name}[{s.cls}]" for s in monitor.series()]
    nf = len(monitor.plan.features)
    return {**_span(w, True, w.end_unix), "rows": w.rows,
            "drifted_features": [n for n, d in zip(names[:nf], r.drifted[:nf]) if d],
            "drifted_predictions": [n for n, d in zip(names[nf:], r.drifted[nf:]) if d],
            "series": {n: {"statistic": _number(r.statistic[i]), "p_value": _number(r.p_value[i]),
                           "q_value": _number(r.q_value[i]), "drifted": bool(r.drifted[i])}
                       for i, n in enumerate(names)}}


def build_report(monitor: DriftMonitor, psi_threshold: float | None = None) -> dict[str, Any]:
    """The JSON drift report of one version: since load, the last closed window, the open one."""
    threshold = monitor.settings.psi_threshold if psi_threshold is None else psi_threshold
    total, sources = monitor.totals()
    current, current_counts = monitor.current_window()
    closed = list(monitor.closed)
    now = time.time()
    last = None
    if closed:
        w = closed[-1]
        last = {**_span(w, True, now), **_view(monitor, w.counts, threshold, w.seconds, monitor.window_results(w))}
    m = monitor.manifest
    s = monitor.settings
    return {
        "model": m.name, "version": m.version,
        "alpha": s.alpha, "correction": CORRECTION, "tests": TESTS,
        "min_rows": s.min_rows,
        "psi_threshold": threshold, "smoothing": SMOOTHING_NOTE,
        "loaded_unix": monitor.loaded_at, "workers": len(sources), "sources": sources,
        "baseline_rows": int((m.baseline or {}).get("rows", 0)),
        "window_settings": {"seconds": s.window_s, "rows": s.window_rows, "check_seconds": s.snapshot_s},
        "since_load": _view(monitor, total, threshold, now - monitor.loaded_at, static=True),
        "window": last,
        "current_window": {**_span(current, False, now),
                           **_view(monitor, current_counts, threshold, now - current.start_unix)},
        "windows": [_brief(monitor, w) for w in closed],
        "unmonitored": dict(monitor.plan.unmonitored),
    }
