"""What one (model, production version, shadow version) comparison has seen: Prometheus counters
and histograms (which a fleet sums) plus this process's finer figures for the readable report
(``GET /v2/models/{name}/shadow``): exact counts, means and maxima, and quantiles from fixed
fine bins (0.001 wide for |dP|, 20 per decade for value differences and latency).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
from onyxserve.server import metrics as m
from onyxserve.server.shadow.compare import RowDiffs

log = logging.getLogger("onyxserve.server.shadow")

QUANTILES = (0.5, 0.9, 0.99)


class FixedBins:
    """Counts over fixed bins [e_i, e_(i+1)), the last bin open-ended; exact count, sum and max.
    Quantiles interpolate within a bin, so they are as precise as the bins are fine."""

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.counts = np.zeros(len(self.edges), dtype=np.int64)  # bin i starts at edges[i]
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size == 0:
            return
        index = np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, len(self.edges) - 1)
        self.counts += np.bincount(index, minlength=len(self.edges))
        self.n += int(values.size)
        self.total += float(values.sum())
        self.max = max(self.max, float(values.max()))

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        target = q * self.n
        cumulative = np.cumsum(self.counts)
        i = int(np.searchsorted(cumulative, target, side="left"))
        i = min(i, len(self.counts) - 1)
        before = cumulative[i - 1] if i > 0 else 0
        low = self.edges[i]
        high = self.edges[i + 1] if i + 1 < len(self.edges) else self.max
        high = min(high, self.max)
        if high <= low or self.counts[i] == 0:
            return float(min(low, self.max))
        return float(low + (high - low) * (target - before) / self.counts[i])

    def summary(self, with_histogram: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.n, "mean": self.total / self.n if self.n else None,
                               "max": self.max if self.n else None}
        for q in QUANTILES:
            out[f"p{round(q * 100)}"] = self.quantile(q)
        if with_histogram:  # the non-empty bins: [low, high, count]
            highs = np.append(self.edges[1:], max(self.max, self.edges[-1]))
            out["histogram"] = [[float(self.edges[i]), float(highs[i]), int(self.counts[i])]
                                for i in np.flatnonzero(self.counts).tolist()]
        return out


def probability_bins() -> FixedBins:
    return FixedBins(np.linspace(0.0, 1.0, 1001))


def log_bins(low: float, high: float) -> FixedBins:
    """A [0, low) bin for (near) zero, then 20 bins per decade up to ``high``."""
    decades = round(np.log10(high / low))
    return FixedBins(np.concatenate(([0.0], np.geomspace(low, high, decades * 20 + 1))))


class ShadowStats:
    """Counters and report figures of one comparison pair. Updated on the event loop only."""

    def __init__(self, model: str, production: str, shadow: str, task: str) -> None:
        self.model, self.production, self.shadow, self.task = model, production, shadow, task
        self.since = time.time()
        labels = (model, production, shadow)
        self._requests = {o: m.SHADOW_REQUESTS.labels(*labels, o) for o in m.SHADOW_OUTCOMES}
        self._rows = {o: m.SHADOW_ROWS.labels(*labels, o) for o in m.SHADOW_OUTCOMES}
        self._labels = labels
        self._agree = m.SHADOW_LABEL_ROWS.labels(*labels, "agree")
        self._disagree = m.SHADOW_LABEL_ROWS.labels(*labels, "disagree")
        self._probability_diff = m.SHADOW_PROBABILITY_DIFF.labels(*labels)
        self._value_diff = m.SHADOW_VALUE_DIFF.labels(*labels)
        self._relative_diff = m.SHADOW_RELATIVE_DIFF.labels(*labels)
        self._seconds = m.SHADOW_SECONDS.labels(*labels)
        self.in_flight_gauge = m.SHADOW_IN_FLIGHT.labels(*labels)
        self.in_flight = 0
        self.requests = dict.fromkeys(m.SHADOW_OUTCOMES, 0)
        self.rows = dict.fromkeys(m.SHADOW_OUTCOMES, 0)
        self.errors: dict[str, dict[str, Any]] = {}  # kind -> {"count", "last_message"}
        self.agree = self.disagree = 0
        self.probability_diff = probability_bins()
        self.value_diff = log_bins(1e-9, 1e9)
        self.relative_diff = log_bins(1e-9, 10.0)
        self.latency = log_bins(1e-6, 100.0)

    def _outcome(self, outcome: str, rows: int) -> None:
        self.requests[outcome] += 1
        self.rows[outcome] += rows
        self._requests[outcome].inc()
        self._rows[outcome].inc(rows)

    def dropped(self, rows: int) -> None:
        self._outcome("dropped", rows)

    def errored(self, rows: int, kind: str, message: str) -> None:
        self._outcome("error", rows)
        m.SHADOW_ERRORS.labels(*self._labels, kind).inc()
        entry = self.errors.setdefault(kind, {"count": 0, "last_message": ""})
        if entry["count"] == 0:  # once per kind: a broken shadow must not flood the log
            log.warning("model %s: shadow version %s failed (%s), counted and not logged again: %s",
                        self.model, self.shadow, kind, message)
        entry["count"] += 1
        entry["last_message"] = message

    def compared(self, diffs: RowDiffs, seconds: np.ndarray) -> None:
        """``diffs`` of all rows of the ``len(seconds)`` requests compared together; ``seconds``:
        each request's shadow latency (queued behind production to compared)."""
        self.requests["mirrored"] += len(seconds)
        self.rows["mirrored"] += diffs.rows
        self._requests["mirrored"].inc(len(seconds))
        self._rows["mirrored"].inc(diffs.rows)
        m.observe_many(self._seconds, seconds)
        self.latency.add(seconds)
        if diffs.agree is not None:
            agree = int(np.count_nonzero(diffs.agree))
            self.agree += agree
            self.disagree += diffs.rows - agree
            self._agree.inc(agree)
            self._disagree.inc(diffs.rows - agree)
        for values, child, bins in (
            (diffs.probability_diff, self._probability_diff, self.probability_diff),
            (diffs.value_diff, self._value_diff, self.value_diff),
            (diffs.relative_diff, self._relative_diff, self.relative_diff),
        ):
            if values is not None:
                values = values[~np.isnan(values)]  # a NaN score would poison the sums
                m.observe_many(child, values)
                bins.add(values)

    def report(self, active: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "production_version": self.production,
            "shadow_version": self.shadow,
            "task": self.task,
            "active": active,
            "since": datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds"),
            "scope": f"this server process (pid {os.getpid()}); /metrics onyxserve_shadow_* sums all workers",
            "requests": {**self._renamed(self.requests), "in_flight": self.in_flight},
            "rows": self._renamed(self.rows),
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "shadow_latency_seconds": self.latency.summary(),
        }
        if self.task == "regression":
            out["value_diff"] = self.value_diff.summary(with_histogram=True)
            out["relative_diff"] = self.relative_diff.summary(with_histogram=True)
        else:
            compared = self.agree + self.disagree
            out["labels"] = {"agree": self.agree, "disagree": self.disagree,
                             "agreement_rate": self.agree / compared if compared else None}
            out["probability_diff"] = {
                "of": "positive class" if self.task == "binary" else "production's top class",
                **self.probability_diff.summary(with_histogram=True),
            }
        return out

    @staticmethod
    def _renamed(counts: dict[str, int]) -> dict[str, int]:
        return {"mirrored": counts["mirrored"], "dropped": counts["dropped"], "errored": counts["error"]}
