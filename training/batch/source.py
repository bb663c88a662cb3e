"""Rows to score, in chunks: CSV/Parquet files through pyarrow, datasources, DataFrames.

Batch prediction and evaluation read their input here. Files stream through pyarrow
(``pyarrow.csv.open_csv`` with declared column types, ``ParquetFile.iter_batches``), so memory
is one chunk (for Parquet: one row group) however large the file. ``to_block`` turns a chunk
into the RowBlock a client would send, which the served path (OnnxScorer) scores.
"""

from __future__ import annotations

import csv
import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from onyxserve.core.cpu import available_cpus
from onyxserve.core.normalizer import RowBlock
from onyxserve.repository.manifest import Manifest
from onyxserve.training.errors import SourceError

CSV_BLOCK_BYTES = 2 << 20
Source = Any  # a path (CSV, Parquet, JSON), a datasource record path, a Datasource, a DataFrame


@dataclass
class Chunk:
    start: int  # 0-based number of the chunk's first row in the input
    batch: pa.RecordBatch | pa.Table | None = None  # a Table when gathered from several blocks
    frame: pd.DataFrame | None = None

    @property
    def n_rows(self) -> int:
        return self.batch.num_rows if self.batch is not None else len(self.frame)

    def column(self, name: str) -> np.ndarray:
        if self.batch is not None:
            return self.batch.column(name).to_numpy(zero_copy_only=False)
        return self.frame[name].to_numpy()

    def to_frame(self) -> pd.DataFrame:
        return self.batch.to_pandas() if self.batch is not None else self.frame


@dataclass
class Reader:
    """Iterate ``chunks()``; ``total`` and ``position()`` drive the progress bar (rows or bytes)."""

    chunks_iter: Iterator[Chunk]
    total: int | None
    unit: str
    position: Any  # () -> int, in ``unit``

    def chunks(self) -> Iterator[Chunk]:
        return self.chunks_iter


def is_datasource_path(source: Source) -> bool:
    return isinstance(source, (str, Path)) and str(source).endswith(".datasource.json")


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".txt"):
        return "tsv" if suffix == ".tsv" else "csv"
    from onyxserve.training.datasource.readers import detect_format

    return detect_format(path)


def open_source(
    source: Source,
    columns: Sequence[str],
    *,
    chunk_rows: int = 65_536,
    string_columns: Sequence[str] = (),
    float_columns: Sequence[str] = (),
) -> Reader:
    """Read ``columns`` of ``source`` in chunks of about ``chunk_rows`` rows. For CSV the types are
    declared (``string_columns``, ``float_columns``) rather than inferred, so a later chunk can
    never disagree with the first."""
    columns = list(dict.fromkeys(columns))
    if isinstance(source, pd.DataFrame):
        return _frame_reader(source, columns, chunk_rows)
    if is_datasource_path(source):
        from onyxserve.training.datasource.record import load_datasource

        source = load_datasource(source)
    if _is_datasource(source):
        return _datasource_reader(source, columns, chunk_rows)
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty")
    fmt = file_format(path)
    if fmt == "parquet":
        return _parquet_reader(path, columns, chunk_rows)
    if fmt in ("csv", "tsv"):
        return _csv_reader(
            path, columns, chunk_rows, "\t" if fmt == "tsv" else ",", string_columns, float_columns
        )
    return _pandas_file_reader(path, fmt, columns, chunk_rows)


def _is_datasource(source: Source) -> bool:
    # a Datasource object exists only if its module was imported: a plain file path does not
    # pay for importing it (~30 ms)
    module = sys.modules.get("onyxserve.training.datasource.record")
    return module is not None and isinstance(source, module.Datasource)


def _missing(available: Sequence[str], columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in set(available)]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise SourceError(f"{where}: missing column(s) {shown}")


def _frame_reader(frame: pd.DataFrame, columns: list[str], chunk_rows: int) -> Reader:
    _missing(list(frame.columns), columns, "the DataFrame")
    state = {"rows": 0}

    def gen() -> Iterator[Chunk]:
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows][columns]
            state["rows"] = start + len(part)
            yield Chunk(start, frame=part)

    return Reader(gen(), len(frame), "rows", lambda: state["rows"])


def _datasource_reader(ds: Any, columns: list[str], chunk_rows: int) -> Reader:
    from onyxserve.training.datasource.record import read_frames

    _missing(list(ds.schema.attributes), columns, f"datasource {ds.name!r}")
    state = {"rows": 0}

    def gen() -> Iterator[Chunk]:
        for frame in read_frames(ds, chunk_rows=chunk_rows, columns=columns):
            start = int(frame.index[0]) if len(frame) else state["rows"]
            state["rows"] = start + len(frame)
            yield Chunk(start, frame=frame)

    return Reader(gen(), ds.row_count, "rows", lambda: state["rows"])


def _pandas_file_reader(path: Path, fmt: str, columns: list[str], chunk_rows: int) -> Reader:
    from onyxserve.training.datasource.readers import iter_frames

    state = {"rows": 0}

    def gen() -> Iterator[Chunk]:
        for frame in iter_frames(path, fmt, chunk_rows=chunk_rows, where=str(path)):
            _missing(list(frame.columns), columns, str(path))
            start = state["rows"]
            state["rows"] += len(frame)
            yield Chunk(start, frame=frame[columns].reset_index(drop=True))

    return Reader(gen(), None, "rows", lambda: state["rows"])


def _parquet_reader(path: Path, columns: list[str], chunk_rows: int) -> Reader:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({exc})") from None
    _missing(pf.schema_arrow.names, columns, str(path))
    state = {"rows": 0}
    # On two cores the reader thread has one and scoring the other: pyarrow's own decoding
    # threads only fight the scorer (measured: 1M rows 0.19 s without, 0.22 s with); with
    # more cores they shorten the read, which is then the longer stage (not measured: this
    # VM has two).
    threads = available_cpus() > 2

    def gen() -> Iterator[Chunk]:
        # one row group at a time: iterating the whole file lets pyarrow read ahead without
        # bound (measured: memory grew with the file), this keeps it to one row group
        with pf:
            for group in range(pf.metadata.num_row_groups):
                for batch in pf.iter_batches(
                    batch_size=chunk_rows, row_groups=[group], columns=columns, use_threads=threads
                ):
                    start = state["rows"]
                    state["rows"] += batch.num_rows
                    yield Chunk(start, batch=batch)

    return Reader(gen(), pf.metadata.num_rows, "rows", lambda: state["rows"])


def csv_header(path: Path, delimiter: str) -> tuple[list[str], float]:
    """The header's column names and the mean bytes per row of the first 64 KiB."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    lines = head.split(b"\n")
    names = next(csv.reader([lines[0].decode("utf-8-sig").rstrip("\r")], delimiter=delimiter))
    body = lines[1:-1] if len(lines) > 2 else lines[1:]
    per_row = (sum(len(x) + 1 for x in body) / len(body)) if body else float(len(head) or 1)
    return [n.strip() for n in names], per_row


def _csv_reader(
    path: Path,
    columns: list[str],
    chunk_rows: int,
    delimiter: str,
    string_columns: Sequence[str],
    float_columns: Sequence[str],
) -> Reader:
    names, per_row = csv_header(path, delimiter)
    _missing(names, columns, str(path))
    types = {c: pa.string() for c in string_columns if c in columns}
    types.update({c: pa.float64() for c in float_columns if c in columns})
    # small parse blocks, gathered into chunks of ``chunk_rows``: the streaming reader reads
    # ahead several blocks, and with large blocks its peak memory grew with the file
    block = int(min(max(per_row * chunk_rows, 1 << 16), CSV_BLOCK_BYTES))
    handle = pa.OSFile(str(path), "r")
    try:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=block, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns, column_types=types, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as exc:
        handle.close()
        raise SourceError(f"{path}: {_arrow_message(exc)}") from None
    state = {"rows": 0}

    def gen() -> Iterator[Chunk]:
        pending: list[pa.RecordBatch] = []
        rows = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as exc:
                    raise SourceError(
                        f"{path}: after row {state['rows'] + rows}: {_arrow_message(exc)}"
                    ) from None
                pending.append(batch)
                rows += batch.num_rows
                if rows >= chunk_rows:
                    yield _gathered(pending, state, rows)
                    pending, rows = [], 0
            if pending:
                yield _gathered(pending, state, rows)
        finally:
            handle.close()

    return Reader(gen(), path.stat().st_size, "B", lambda: handle.tell() if not handle.closed else 0)


def _gathered(batches: list[pa.RecordBatch], state: dict[str, int], rows: int) -> Chunk:
    start = state["rows"]
    state["rows"] += rows
    return Chunk(start, batch=batches[0] if len(batches) == 1 else pa.Table.from_batches(batches))


def _arrow_message(exc: Exception) -> str:
    return str(exc).split("\n")[0]


class Prefetch:
    """Chunks read ahead in a thread (pyarrow decodes without the GIL) while the caller scores.
    The thread starts at once, so reading also overlaps what the caller does before its first
    ``next`` (batch prediction loads the model meanwhile). At most ``depth`` chunks wait, so
    memory stays bounded; errors surface in the caller. ``close()`` (or ``with``) stops it."""

    def __init__(self, chunks: Iterator[Chunk], depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = object()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(chunks,), name="batch-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, chunks: Iterator[Chunk]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(self._done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the source's own finally (file handles) runs here, not at GC

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Chunk:
        if self._finished:
            raise StopIteration
        item = self._q.get()
        if item is self._done:
            self._finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prefetch(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """``Prefetch`` as a generator: the thread starts at the first ``next`` and stops when the
    loop ends or breaks."""
    with Prefetch(chunks, depth) as ahead:
        yield from ahead


def to_block(manifest: Manifest, chunk: Chunk) -> RowBlock:
    """The chunk's rows as a client would send them (form A if all numeric, else form B)."""
    names = list(manifest.feature_names)
    if manifest.all_numeric and chunk.batch is not None:
        # one array per feature (form B), straight from Arrow's columns: no row-major copy first
        columns = [_float_column(chunk.batch.column(name), name, chunk.start) for name in names]
        return RowBlock(n_rows=chunk.n_rows, columns=columns)
    from onyxserve.training.export.parity import row_block

    frame = chunk.to_frame()
    try:
        return row_block(manifest, frame)
    except (ValueError, TypeError) as exc:
        raise SourceError(f"rows {chunk.start}..{chunk.start + chunk.n_rows - 1}: {exc}") from None


def _float_column(col: pa.Array, name: str, start: int) -> np.ndarray:
    if not pa.types.is_floating(col.type):
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = next((i for i, v in enumerate(col.to_pylist()) if v is not None and not _is_number(v)), 0)
            raise SourceError(
                f"column {name!r}, row {start + bad}: {col[bad].as_py()!r} is not a number"
            ) from None
    return col.to_numpy(zero_copy_only=False)


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False
