"""Where a version's counts live: one int64 vector, private memory in one process, or a file
mapped into the worker (``<dir>/drift/*.i64``) beside a JSON layout under ``--workers N``, so any
worker can read and sum every worker's counts at scrape or report time (files of a worker that
died are still summed: counter semantics).

A worker that unloads a version (an explicit unload, a reload) retires its counts: it adds them
into the version's ``retired-<digest>`` file and removes its own, under an exclusive lock that
readers share, so the sum every worker exports never goes backwards (a drop would read as a
counter reset, and Prometheus would count the rest again). Reports leave retired counts out:
``since_load`` is the rows since each serving worker loaded the version."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


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

    def close(self, layout: dict[str, Any] | None = None) -> None:
        """Remove the count file; with the version's ``layout``, retire its counts first."""
        if self.path is None:
            return
        with _locked(self.path.parent, fcntl.LOCK_EX):
            if layout is not None and len(self.array):
                _retire(self.path.parent, layout, np.array(self.array, dtype=np.int64))
            for p in (self.path.with_suffix(".json"), self.path):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        self.path = None


@contextlib.contextmanager
def _locked(directory: Path, mode: int) -> Iterator[None]:
    """The directory's lock: readers share it, a retiring worker holds it alone."""
    try:
        fh = open(directory / "retire.lock", "a+b")
    except OSError:  # no folder (nothing published yet): nothing to coordinate
        yield
        return
    with fh:
        fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _retire(directory: Path, layout: dict[str, Any], counts: np.ndarray) -> None:
    """Add ``counts`` into the version's retired file (under the exclusive lock)."""
    target = directory / f"retired-{layout['digest']}.i64"
    meta = target.with_suffix(".json")
    if meta.exists():
        with contextlib.suppress(OSError, ValueError):
            previous = np.fromfile(target, dtype=np.int64)
            if len(previous) == len(counts):
                counts = counts + previous
    tmp = target.with_suffix(".tmp")
    counts.tofile(tmp)
    os.replace(tmp, target)
    tmp.write_text(json.dumps({**layout, "pid": -1, "retired": True}), encoding="utf-8")
    os.replace(tmp, meta)


def shared_sources(directory: Path, retired: bool = True) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """(layout, counts) of every published count file in ``directory`` (every worker's), and,
    with ``retired``, the counts that unloaded workers retired (their layout says ``retired``)."""
    found = []
    with _locked(directory, fcntl.LOCK_SH):  # all files of one moment: none retired half-way
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
            if len(counts) == layout.get("size") and (retired or not layout.get("retired")):
                found.append((layout, counts))
    yield from found
