"""Where a version's counts live: one int64 vector, private memory in one process, or a file
mapped into the worker (``<dir>/drift/*.i64``) beside a JSON layout under ``--workers N``, so any
worker can read and sum every worker's counts at scrape or report time (files of a worker that
died are still summed: counter semantics)."""

from __future__ import annotations

import contextlib
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
