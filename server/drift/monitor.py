"""The per-version drift monitor: the compiled gather pass counts the raw feature values of
every batch into the monitor's vector (no second pass); ``observe`` counts the batch's
predictions; periodic snapshots cut the recent window.

Writers: only the model's batcher writes, one batch at a time (its single runner task awaits
each batch, inline or on the compute thread, before taking the next), so plain integers need no
lock. Readers may see one batch half counted across features; each slot is one aligned int64.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onyxserve.repository.manifest import Manifest
from onyxserve.server.drift.counts import CountStore, shared_sources
from onyxserve.server.drift.plan import DriftPlan, Series, numeric_slots, plan_drift
from onyxserve.server.drift.statistics import DriftTests

log = logging.getLogger(__name__)


SMALL_BATCH = 4  # up to this many rows, predictions are counted without numpy


@dataclass(frozen=True)
class DriftSettings:
    enabled: bool = True
    alpha: float = 0.05  # Benjamini-Hochberg level across a version's series (statistics.py)
    psi_threshold: float = 0.2  # secondary: a series whose PSI exceeds this is marked psi_over_threshold
    min_rows: int = 1  # a floor above each test's own minimum rows (statistics.py): never flagged below
    window_s: float = 900.0  # the recent window's length
    snapshot_s: float = 60.0  # how often the window's snapshots are taken
    directory: Path | None = None  # multiprocess: where every worker's count files live

    @classmethod
    def from_environment(cls, **values: Any) -> DriftSettings:
        """With PROMETHEUS_MULTIPROC_DIR set (``--workers N``), counts go to files there."""
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        return cls(**values, directory=Path(shared) / "drift" if shared else None)


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
        self.tests = DriftTests([], settings.alpha)

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
        # the tests' index matrices and baseline CDFs: built once, each report only gathers counts
        self.tests = DriftTests([s.test_bins() for s in self.series()], self.settings.alpha, self.settings.min_rows)
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
