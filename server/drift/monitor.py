"""The per-version drift monitor: the compiled gather pass counts the raw feature values of
every batch into the monitor's vector (no second pass); ``observe`` counts the batch's
predictions. Tumbling windows: the open window is the counts since its start (a copy of the
totals then); it closes once it holds ``window_rows`` rows (checked after each batch in one
process; at each check under ``--workers N``, where the rows are every worker's) or is
``window_s`` old (checked every ``snapshot_s``), whichever comes first, and the next opens.
The last HISTORY closed windows are kept, each tested once (cached): a window's flag is a test
of its own rows only, so a sudden shift is flagged at the close of the first window after it.

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
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onyxserve.repository.manifest import Manifest
from onyxserve.server.drift.counts import CountStore, shared_sources
from onyxserve.server.drift.plan import DriftPlan, Series, numeric_slots, plan_drift
from onyxserve.server.drift.statistics import DriftTests, Results

log = logging.getLogger(__name__)


SMALL_BATCH = 4  # up to this many rows, predictions are counted without numpy
HISTORY = 12  # closed windows kept per version


@dataclass(frozen=True)
class DriftSettings:
    enabled: bool = True
    alpha: float = 0.05  # Benjamini-Hochberg level across a version's series (statistics.py)
    psi_threshold: float = 0.2  # secondary: a series whose PSI exceeds this is marked psi_over_threshold
    min_rows: int = 1  # a floor above each test's own minimum rows (statistics.py): never flagged below
    window_s: float = 900.0  # a tumbling window closes this long after it opened (0: no time limit)
    window_rows: int = 0  # ... or once it holds this many rows (0: no row limit)
    snapshot_s: float = 1.0  # how often windows are checked (time, and rows under --workers N)
    directory: Path | None = None  # multiprocess: where every worker's count files live

    @classmethod
    def from_environment(cls, **values: Any) -> DriftSettings:
        """With PROMETHEUS_MULTIPROC_DIR set (``--workers N``), counts go to files there."""
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        return cls(**values, directory=Path(shared) / "drift" if shared else None)


# the monitors of this process (single-process export reads them; multiprocess reads files)
LIVE: set[DriftMonitor] = set()


@dataclass
class Window:
    """One tumbling window: open (``counts`` None) or closed with its own counts."""

    index: int
    start_unix: float
    start_mono: float
    base: dict[str, np.ndarray]  # each count source's counts when it opened (a source: one
    # worker's file, or this process's vector)
    end_unix: float = 0.0
    counts: np.ndarray | None = None
    rows: int = 0
    results: Results | None = field(default=None, repr=False)  # closed: tested once, then cached

    @property
    def seconds(self) -> float:
        return self.end_unix - self.start_unix


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
        self._lock = threading.Lock()  # windows: closed by the batch thread and by the check task
        self._current: Window | None = None
        self.closed: deque[Window] = deque(maxlen=HISTORY)
        self._open_rows = 0  # rows observed by this process since the open window opened
        self._exact_rows = settings.window_rows > 0 and settings.directory is None
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
        self._current = Window(0, time.time(), time.monotonic(), {})  # every source from zero

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
        if len(self._pred):
            self._observe(outputs)
        if self._exact_rows:  # a row-count window closes after the batch that fills it
            first = next(iter(outputs.values()), None)
            self._open_rows += len(first) if first is not None else 0
            if self._open_rows >= self.settings.window_rows:
                self.close_window()

    def _observe(self, outputs: Mapping[str, np.ndarray]) -> None:
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
        found = self._sources()
        total = np.zeros(len(self._store.array), dtype=np.int64)
        for counts in found.values():
            total += counts
        return total, [{"pid": int(key.split("-")[0]), "rows": self._rows(c)} for key, c in found.items()]

    def _sources(self) -> dict[str, np.ndarray]:
        """Each count source's counts now: this process's vector, or every serving worker's
        file (retired counts left out), keyed by pid and load time."""
        directory = self.settings.directory
        if directory is None or self._store.path is None:
            return {f"{os.getpid()}-{self.loaded_at}": np.array(self._store.array, dtype=np.int64)}
        return {f"{layout['pid']}-{layout['loaded_unix']}": counts
                for layout, counts in shared_sources(directory, retired=False)  # since each worker loaded
                if layout.get("digest") == self.digest}

    def _rows(self, counts: np.ndarray) -> int:
        series = self.series()
        return int(counts[series[0].offset : series[0].offset + len(series[0].bins)].sum()) if series else 0

    # -- windows
    def _since(self, w: Window, sources: dict[str, np.ndarray]) -> np.ndarray:
        """The counts of ``sources`` since ``w`` opened, source by source: a source new since
        then counts from zero; one not read now (gone, or its file missed) adds nothing now."""
        counts = np.zeros(len(self._store.array), dtype=np.int64)
        for key, c in sources.items():
            base = w.base.get(key)
            counts += c if base is None else np.maximum(c - base, 0)
        return counts

    def close_window(self, sources: dict[str, np.ndarray] | None = None, only: Window | None = None) -> Window | None:
        """Close the open window now (its counts: each source's counts less its base) and open
        the next; with ``only``, unless another thread has closed that one meanwhile."""
        sources = self._sources() if sources is None else sources
        with self._lock:
            w = self._current
            if w is None or (only is not None and w is not only):
                return None
            counts = self._since(w, sources)
            w.end_unix, w.counts, w.rows = time.time(), counts, self._rows(counts)
            self.closed.append(w)
            # a source not read now keeps its old base: its rows since go to the next window, once
            self._current = Window(w.index + 1, w.end_unix, time.monotonic(), {**w.base, **sources})
            self._open_rows = 0
            return w

    def check_windows(self) -> None:
        """Close the open window if it is old enough, or (rows counted by every worker) full."""
        with self._lock:
            w = self._current
        if w is None:
            return
        s = self.settings
        sources = self._sources()
        old = s.window_s > 0 and time.monotonic() - w.start_mono >= s.window_s
        full = s.window_rows > 0 and not self._exact_rows and self._rows(self._since(w, sources)) >= s.window_rows
        if old or full:  # unless a batch closed it since (by rows): then the next one is young
            self.close_window(sources, only=w)

    def current_window(self) -> tuple[Window, np.ndarray]:
        """The open window and its counts so far."""
        sources = self._sources()
        with self._lock:
            w = self._current
        return w, self._since(w, sources)

    def window_results(self, w: Window) -> Results:
        if w.results is None:
            w.results = self.tests.run(w.counts)
        return w.results

    def start(self) -> None:
        LIVE.add(self)
        self._task = asyncio.get_running_loop().create_task(self._window_loop(), name="drift-windows")

    async def _window_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_s)
            try:
                self.check_windows()
            except Exception:  # noqa: BLE001 - a failed check must not end the windows
                log.exception("drift window check failed")

    def close(self) -> None:
        LIVE.discard(self)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._store.close(self._layout or None)  # retired: the exported counters never drop

    def series(self) -> list[Series]:
        return [*self.plan.features, *self.plan.predictions]


def local_sources() -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    for monitor in list(LIVE):
        if monitor.manifest is not None:
            yield monitor.layout(), monitor._store.array
