"""Rows to score, in chunks: CSV/Parquet files through pyarrow, datasources, DataFrames.

Batch prediction and evaluation read their input here. Files stream through pyarrow
(``pyarrow.csv.open_csv`` with declared column types, ``ParquetFile.iter_batches``), so memory
is one chunk (for Parquet: one row group) however large the file. ``to_block`` turns a chunk
into the RowBlock a client would send, which the served path (OnnxScorer) scores.

A value that cannot be read as its column's type is a SourceError naming the file, the column,
the 1-based data row (the header line not counted, as in a datasource's violations) and the
value. pyarrow's own message has only a 0-based column index, so on that error the failing
rows are read again as text (``locate_csv_error``): the happy path pays nothing for it.
"""

from __future__ import annotations

import csv
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
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
    where: str | None = None  # the file or URI errors name
    # a datasource's recorded violations, (1-based row, column) -> reason: read back as missing,
    # so an error about the missing value can say what the file holds there
    violations: dict[tuple[int, str], str] | None = None

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
        raise SourceError("no such file", where=str(path))
    if path.stat().st_size == 0:
        raise SourceError("the file is empty", where=str(path))
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


def missing_columns_error(available: Sequence[str], columns: Sequence[str], where: str) -> SourceError | None:
    """The error for ``columns`` that ``available`` lacks (naming them and the ones it has), or None."""
    have = set(available)
    missing = [c for c in columns if c not in have]
    if not missing:
        return None
    shown = ", ".join(repr(c) for c in missing[:8]) + (
        f" and {len(missing) - 8} more" if len(missing) > 8 else ""
    )
    listed = ", ".join(repr(c) for c in list(available)[:20]) + (" ..." if len(available) > 20 else "")
    return SourceError(
        f"missing column(s) {shown}; the columns are: {listed or 'none'}", where=where, column=missing[0]
    )


def _missing(available: Sequence[str], columns: Sequence[str], where: str) -> None:
    error = missing_columns_error(available, columns, where)
    if error is not None:
        raise error


def _frame_reader(frame: pd.DataFrame, columns: list[str], chunk_rows: int) -> Reader:
    _missing(list(frame.columns), columns, "the DataFrame")
    state = {"rows": 0}

    def gen() -> Iterator[Chunk]:
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows][columns]
            state["rows"] = start + len(part)
            yield Chunk(start, frame=part, where="the DataFrame")

    return Reader(gen(), len(frame), "rows", lambda: state["rows"])


def _datasource_reader(ds: Any, columns: list[str], chunk_rows: int) -> Reader:
    from onyxserve.training.datasource.record import read_frames

    _missing(list(ds.schema.attributes), columns, f"datasource {ds.name!r} ({ds.location.uri})")
    state = {"rows": 0}
    listed = {(v["row"], v["column"]): v["reason"] for v in ds.violations.get("rows", [])}

    def gen() -> Iterator[Chunk]:
        for frame in read_frames(ds, chunk_rows=chunk_rows, columns=columns):
            start = int(frame.index[0]) if len(frame) else state["rows"]
            state["rows"] = start + len(frame)
            yield Chunk(start, frame=frame, where=ds.location.uri, violations=listed)

    return Reader(gen(), ds.row_count, "rows", lambda: state["rows"])


def _pandas_file_reader(path: Path, fmt: str, columns: list[str], chunk_rows: int) -> Reader:
    from onyxserve.training.datasource.readers import iter_frames

    state = {"rows": 0}

    def gen() -> Iterator[Chunk]:
        for frame in iter_frames(path, fmt, chunk_rows=chunk_rows, where=str(path)):
            _missing(list(frame.columns), columns, str(path))
            start = state["rows"]
            state["rows"] += len(frame)
            yield Chunk(start, frame=frame[columns].reset_index(drop=True), where=str(path))

    return Reader(gen(), None, "rows", lambda: state["rows"])


def _parquet_reader(path: Path, columns: list[str], chunk_rows: int) -> Reader:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"not a readable Parquet file ({exc})", where=str(path)) from None
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
                    yield Chunk(start, batch=batch, where=str(path))

    return Reader(gen(), pf.metadata.num_rows, "rows", lambda: state["rows"])


def csv_header(path: Path, delimiter: str) -> tuple[list[str], float]:
    """The header's column names and the mean bytes per row of the first 64 KiB."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    lines = head.split(b"\n")
    try:
        header = lines[0].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"the header line is not UTF-8 text: {lines[0][max(exc.start - 20, 0) : exc.end + 20]!r}",
            where=str(path),
        ) from None
    names = next(csv.reader([header.rstrip("\r")], delimiter=delimiter))
    body = lines[1:-1] if len(lines) > 2 else lines[1:]
    per_row = (sum(len(x) + 1 for x in body) / len(body)) if body else float(len(head) or 1)
    return [n.strip() for n in names], per_row


def csv_convert_options(
    columns: Sequence[str], string_columns: Sequence[str], float_columns: Sequence[str]
) -> pacsv.ConvertOptions:
    """The declared types of a typed CSV read: one place, so the single-process and the Dask
    readers (and the re-read that locates a bad value) read a cell the same way."""
    types = {c: pa.string() for c in string_columns if c in columns}
    types.update({c: pa.float64() for c in float_columns if c in columns})
    return pacsv.ConvertOptions(include_columns=list(columns), column_types=types, strings_can_be_null=True)


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
    convert = csv_convert_options(columns, string_columns, float_columns)
    # small parse blocks, gathered into chunks of ``chunk_rows``: the streaming reader reads
    # ahead several blocks, and with large blocks its peak memory grew with the file
    block = int(min(max(per_row * chunk_rows, 1 << 16), CSV_BLOCK_BYTES))
    parse = pacsv.ParseOptions(delimiter=delimiter)
    handle = pa.OSFile(str(path), "r")

    def located(exc: pa.ArrowInvalid, rows_before: int) -> SourceError:
        return locate_csv_error(
            exc,
            lambda: pa.OSFile(str(path), "r"),
            where=str(path),
            parse_options=parse,
            convert_options=convert,
            block_size=block,
            rows_before=rows_before,
            names=names,
        )

    try:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=block, use_threads=True),
            parse_options=parse,
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:  # open_csv reads and converts the first block already
        handle.close()
        raise located(exc, 0) from None
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
                    raise located(exc, state["rows"] + rows) from None
                pending.append(batch)
                rows += batch.num_rows
                if rows >= chunk_rows:
                    yield _gathered(pending, state, rows, str(path))
                    pending, rows = [], 0
            if pending:
                yield _gathered(pending, state, rows, str(path))
        finally:
            handle.close()

    return Reader(gen(), path.stat().st_size, "B", lambda: handle.tell() if not handle.closed else 0)


def locate_csv_error(
    exc: pa.ArrowInvalid,
    reopen: Callable[[], Any],
    *,
    where: str,
    parse_options: pacsv.ParseOptions,
    convert_options: pacsv.ConvertOptions,
    block_size: int,
    rows_before: int,
    names: Sequence[str] = (),
    first_row: int = 1,
) -> SourceError:
    """The SourceError for pyarrow's ``exc`` on a typed CSV read, naming the row, column and value.

    ``reopen`` gives a fresh stream of the same bytes; ``rows_before`` data rows were read
    without error, so the bad one is at or after them; ``first_row`` is the 1-based file row
    of the stream's first data row (a Dask part's); ``names`` are the header's, in file order.
    Only the rows from ``rows_before`` on are converted again, the declared columns as raw
    bytes, each checked with the conversion the read uses (whitespace-trimmed, as pyarrow's CSV
    converter trims numbers); the first bad cell by row, then by file column, is named,
    whatever block or thread pyarrow hit first. A malformed row is found by one more parse.
    """
    # imported here, on the error path only: a plain file's read imports no datasource module
    from onyxserve.training.datasource.locate import bad_csv_cell, bad_csv_row, not_a

    message = _arrow_message(exc)
    try:
        if "CSV parse error" in message:
            found = bad_csv_row(reopen, parse_options.delimiter, block_size)
            if found is not None and found[0] >= rows_before:
                row, text, expected, actual = found
                return SourceError(
                    f"expected {expected} fields, found {actual}: {text[:80]!r}",
                    where=where,
                    row=first_row + row,
                )
        else:
            cell = bad_csv_cell(reopen, parse_options, convert_options, block_size, rows_before, names)
            if cell is not None:
                row, column, value, kind = cell
                return SourceError(
                    not_a(kind, value), where=where, row=first_row + row, column=column, value=value
                )
    except (pa.ArrowException, OSError):
        pass  # the re-read failed too: fall back to pyarrow's words
    return SourceError(f"after row {first_row - 1 + rows_before}: {message}", where=where)


def _gathered(batches: list[pa.RecordBatch], state: dict[str, int], rows: int, where: str) -> Chunk:
    start = state["rows"]
    state["rows"] += rows
    batch = batches[0] if len(batches) == 1 else pa.Table.from_batches(batches)
    return Chunk(start, batch=batch, where=where)


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
        columns = [_float_column(chunk.batch.column(name), name, chunk) for name in names]
        return RowBlock(n_rows=chunk.n_rows, columns=columns)
    from onyxserve.training.export.parity import row_block

    frame = chunk.to_frame()
    try:
        return row_block(manifest, frame)
    except (ValueError, TypeError) as exc:
        # a value that is not a number (JSON text, a DataFrame of objects): find and name it
        for f in manifest.features:
            # object or (pandas 3) str columns: the ones that can hold a non-number
            if not f.is_bytes and not pd.api.types.is_numeric_dtype(frame[f.name].dtype):
                bad = _first_non_number(frame[f.name].to_numpy())
                if bad is not None:
                    value = frame[f.name].iloc[bad]
                    raise SourceError(
                        f"{value!r} is not a number",
                        where=chunk.where,
                        row=chunk.start + bad + 1,
                        column=f.name,
                        value=value,
                    ) from None
        raise SourceError(
            f"rows {chunk.start + 1}..{chunk.start + chunk.n_rows}: {exc}", where=chunk.where
        ) from None


def _first_non_number(values: np.ndarray) -> int | None:
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and v != v):
            continue
        try:
            float(v)
        except (TypeError, ValueError):
            return i
    return None


def _float_column(col: pa.Array | pa.ChunkedArray, name: str, chunk: Chunk) -> np.ndarray:
    if not pa.types.is_floating(col.type):
        kind = col.type
        if pa.types.is_dictionary(kind):  # a Parquet category column: its values decide
            col, kind = pc.cast(col, kind.value_type), kind.value_type
        numberlike = pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)
        if not (numberlike or pa.types.is_null(kind) or _is_text(kind)):
            raise SourceError(
                f"the column holds {kind} values, the model takes numbers", where=chunk.where, column=name
            )
        if _is_text(kind):
            col = pc.utf8_trim_whitespace(col)  # as pyarrow's CSV reader takes ' 1.5'
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            from onyxserve.training.datasource.locate import first_unconvertible

            values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            bad = first_unconvertible(values, pa.float64()) or 0
            value = values[bad].as_py()
            raise SourceError(
                f"{value!r} is not a number",
                where=chunk.where,
                row=chunk.start + bad + 1,
                column=name,
                value=value,
            ) from None
    return col.to_numpy(zero_copy_only=False)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def feature_value_error(exc: Any, chunk: Chunk) -> SourceError:
    """The SourceError for the served path's FeatureValueError on ``chunk``: the file, the
    1-based row in the input, the feature's column and its value there."""
    row = chunk.start + exc.row + 1
    value: Any = None
    try:
        value = chunk.column(exc.feature)[exc.row]
        value = value.item() if isinstance(value, np.generic) else value
    except (KeyError, IndexError, ValueError, TypeError):
        pass
    violation = (chunk.violations or {}).get((row, exc.feature))
    if exc.reason.startswith("is NaN") and violation is not None:
        reason = f"{violation} (a schema violation, read as missing) and the model has no imputer to fill it"
    elif exc.reason.startswith("is NaN"):
        reason = "the value is missing (empty or NaN) and the model has no imputer to fill it"
    elif exc.reason == "is infinite":
        reason = f"{value!r} is infinite"
    else:
        reason = exc.reason
    return SourceError(reason, where=chunk.where, row=row, column=exc.feature, value=value)
