"""Read a data file in chunks of rows: CSV (with or without a header), JSON Lines, a JSON array,
or Parquet. Each reader yields DataFrames of at most ``chunk_rows`` rows, so memory is bounded
by one chunk whatever the file's size (a JSON array is parsed record by record, never whole).

CSV values are read as text (the profiler decides what is a number); JSON scalars keep their
JSON type (true/false become the text 'true'/'false'); Parquet keeps its column types.
Every parse error names the file and the line or row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from onyxserve.training.datasource.profile import MISSING_TOKENS
from onyxserve.training.errors import DatasourceError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SNIFF_BYTES = 64 * 1024
_MAX_JSON_RECORD = 64 * 1024 * 1024  # a single JSON array element larger than this is refused


def detect_format(path: Path, name: str | None = None) -> str:
    """The format by extension of ``name`` (default: the path's), else by the first bytes."""
    suffix = Path(name or path.name).suffix.lower()
    if suffix in _EXTENSIONS and _EXTENSIONS[suffix] != "json":
        return _EXTENSIONS[suffix]
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"  # one object per line (a single object is a one-line file)
    return "csv"


def iter_frames(
    path: Path,
    fmt: str,
    *,
    chunk_rows: int,
    where: str,
    header: bool | None = None,
    names: Sequence[str] | None = None,
    info: dict[str, Any] | None = None,
) -> Iterator[pd.DataFrame]:
    """Chunks of the file at ``path`` (``where`` is how errors name it: a path or URI).

    For CSV, ``info["header"]`` is set to whether the first line was taken as a header.
    """
    if path.stat().st_size == 0:
        raise DatasourceError("the file is empty", where=where)
    if fmt in ("csv", "tsv"):
        return _csv_frames(
            path,
            "\t" if fmt == "tsv" else ",",
            chunk_rows,
            where,
            header,
            names,
            info if info is not None else {},
        )
    if fmt == "jsonl":
        return _chunked(_jsonl_records(path, where), chunk_rows, where)
    if fmt == "json":
        return _chunked(_json_array_records(path, where), chunk_rows, where)
    if fmt == "parquet":
        return _parquet_frames(path, chunk_rows, where)
    raise DatasourceError(f"unknown format {fmt!r}; expected one of {FORMATS}", where=where)


# -- CSV -------------------------------------------------------------------------------------
def csv_has_header(first: list[str], rest: list[list[str]]) -> bool:
    """Guess whether the first CSV row is a header.

    It is when its fields are all non-empty and not numbers, and some column holds a
    number below it (or, with no numeric column, when csv.Sniffer thinks so). A schema's
    ``dataFileContainsHeader`` or ``--header/--no-header`` settings skip the guess.
    """
    if not first or any(not f.strip() or _is_number(f) for f in first):
        return False
    if any(_is_number(row[i]) for row in rest for i in range(min(len(row), len(first)))):
        return True
    sample = "\n".join(",".join(r) for r in [first, *rest])
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return True


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_head(path: Path, sep: str, where: str) -> tuple[list[str], list[list[str]]]:
    # bytes that are not UTF-8 are replaced for the sniffing only: the read itself refuses
    # them, naming their row and column
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        text = f.read(_SNIFF_BYTES)
    lines = text.splitlines()[:21]
    if len(text) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short by the sample
    rows = [r for r in csv.reader(lines, delimiter=sep, skipinitialspace=True) if r]
    if not rows:
        raise DatasourceError("the file has no rows (only blank lines)", where=where)
    return rows[0], rows[1:]


def _csv_frames(
    path: Path,
    sep: str,
    chunk_rows: int,
    where: str,
    header: bool | None,
    names: Sequence[str] | None,
    info: dict[str, Any],
) -> Iterator[pd.DataFrame]:
    first, rest = _csv_head(path, sep, where)
    if header is None:
        header = csv_has_header(first, rest)
    info["header"] = header
    if header:
        dupes = sorted({c for c in first if first.count(c) > 1})
        if dupes:
            raise DatasourceError("the header names this column more than once", where=where, column=dupes[0])
        columns = [c.strip() for c in first]
    elif names:
        if len(names) != len(first):
            raise DatasourceError(
                f"the file has no header and {len(first)} columns, but the schema lists {len(names)}"
                " attributes; list every column in file order",
                where=where,
                key="attributes",
            )
        columns = list(names)
    else:
        width = len(str(len(first)))
        columns = [f"Var{i:0{width}d}" for i in range(1, len(first) + 1)]
    options = {
        "sep": sep,
        "header": 0 if header else None,
        "names": columns,
        "index_col": False,
        "dtype": str,
        "na_values": list(MISSING_TOKENS),
        "keep_default_na": False,
        "skipinitialspace": True,
        "encoding": "utf-8-sig",
        "chunksize": chunk_rows,
        "engine": "c",
    }
    return _guard_csv(path, options, where)


def _guard_csv(path: Path, options: dict[str, Any], where: str) -> Iterator[pd.DataFrame]:
    try:
        with pd.read_csv(path, **options) as reader:
            yield from reader
    except pd.errors.ParserError as exc:
        raise _malformed(path, options, where, exc) from None
    except pd.errors.EmptyDataError:
        raise DatasourceError("the file is empty", where=where) from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, options, where, exc) from None


def _malformed(path: Path, options: dict[str, Any], where: str, exc: Exception) -> DatasourceError:
    """The error for a row pandas could not split, with its data row: pandas' "line N" counts
    blank lines and not the lines in quoted fields, so the row is found again (with pyarrow,
    only on this error)."""
    import pyarrow as pa
    from onyxserve.training.datasource.locate import bad_csv_row

    try:
        found = bad_csv_row(
            lambda: pa.OSFile(str(path), "r"),
            options["sep"],
            header=options["header"] is not None,
            too_many_only=True,  # pandas pads a short row with missing values
        )
    except (pa.ArrowException, OSError):
        found = None
    if found is not None:
        row, text, expected, actual = found
        return DatasourceError(
            f"malformed CSV: expected {expected} fields, found {actual}: {text[:80]!r}",
            where=where,
            row=row + 1,
        )
    message = str(exc).replace("Error tokenizing data. C error: ", "")
    return DatasourceError(f"malformed CSV: {message.strip()}", where=where)


def _not_utf8(path: Path, options: dict[str, Any], where: str, exc: UnicodeDecodeError) -> DatasourceError:
    """The error for bytes that are not UTF-8, with their row and column: pandas names a byte
    offset into its read buffer, not into the file."""
    import pyarrow as pa
    from onyxserve.training.datasource.locate import bad_utf8_cell

    try:
        found = bad_utf8_cell(
            lambda: pa.OSFile(str(path), "r"), options["sep"], options["names"], header=options["header"] is not None
        )
    except (pa.ArrowException, OSError):
        found = None
    if found is not None:
        row, column, raw = found
        return DatasourceError(f"not UTF-8 text: {raw!r}", where=where, row=row + 1, column=column, value=raw)
    return DatasourceError(f"not UTF-8 text: {exc.reason}", where=where)


# -- JSON ------------------------------------------------------------------------------------
def _record(obj: Any, row: int, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DatasourceError(f"expected a JSON object, found {type(obj).__name__}", where=where, row=row)
    out = {}
    for key, value in obj.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            raise DatasourceError(
                "nested JSON value; attributes must be scalars", where=where, row=row, column=key
            )
        out[key] = value
    return out


def _jsonl_records(path: Path, where: str) -> Iterator[dict[str, Any]]:
    row = 0
    # bytes, decoded line by line: a text-mode file decodes ahead in blocks, and its error
    # could not say which line holds the bad bytes
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasourceError(
                    f"not UTF-8 text on line {line_no}: {raw[max(exc.start - 20, 0) : exc.end + 20]!r}",
                    where=where,
                    row=row + 1,
                ) from None
            if not line.strip():
                continue
            row += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasourceError(
                    f"malformed JSON on line {line_no} column {exc.colno}: {exc.msg}",
                    where=where,
                    row=row,
                ) from None
            yield _record(obj, row, where)


def _json_array_records(path: Path, where: str, block: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The elements of a top-level JSON array, decoded one at a time from a sliding buffer."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig") as f:
        buf, pos, eof, lines_before, row = "", 0, False, 0, 0

        def fill() -> bool:
            nonlocal buf, pos, eof, lines_before
            try:
                more = f.read(block)
            except UnicodeDecodeError as exc:
                raise DatasourceError(f"not UTF-8 text: {exc.reason}", where=where) from None
            lines_before += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + more, 0
            eof = not more
            return bool(more)

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return buf[pos] if pos < len(buf) else ""

        def fail(msg: str, at: int, element: int | None = None) -> DatasourceError:
            line = lines_before + buf.count("\n", 0, at) + 1
            return DatasourceError(
                f"malformed JSON array on line {line}: {msg}",
                where=where,
                row=element if element is not None else row + 1,
            )

        if skip_ws() != "[":
            raise DatasourceError("a JSON array must start with '['", where=where)
        pos += 1
        if skip_ws() == "]":
            return
        while True:
            if skip_ws() == "":
                raise fail("the array is not closed", pos)
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if eof or len(buf) - pos > _MAX_JSON_RECORD or not fill():
                        raise fail(exc.msg, exc.pos) from None
            pos = end
            row += 1
            yield _record(obj, row, where)
            sep = skip_ws()
            if sep == "]":
                return
            if sep != ",":
                raise fail(f"expected ',' or ']' after it, found {sep or 'end of file'!r}", pos, row)
            pos += 1


def _chunked(records: Iterator[dict[str, Any]], chunk_rows: int, where: str) -> Iterator[pd.DataFrame]:
    columns: dict[str, None] = {}
    batch: list[dict[str, Any]] = []
    for rec in records:
        columns.update(dict.fromkeys(rec))
        batch.append(rec)
        if len(batch) == chunk_rows:
            yield pd.DataFrame.from_records(batch, columns=list(columns))
            batch = []
    if batch:
        yield pd.DataFrame.from_records(batch, columns=list(columns))


# -- Parquet ---------------------------------------------------------------------------------
def _parquet_frames(path: Path, chunk_rows: int, where: str) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasourceError(f"not a readable Parquet file: {exc}", where=where) from None
    for fld in pf.schema_arrow:
        if pa.types.is_nested(fld.type):
            raise DatasourceError(
                f"nested Parquet type {fld.type}; attributes must be scalars", where=where, column=fld.name
            )
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            for name in frame.columns:
                col = frame[name]
                if not (
                    pd.api.types.is_numeric_dtype(col)
                    or pd.api.types.is_bool_dtype(col)
                    or col.dtype == object
                    or isinstance(col.dtype, pd.StringDtype)
                ):
                    frame[name] = col.astype(str).where(col.notna(), None)  # dates, categories -> text
            yield frame
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasourceError(f"corrupt Parquet data: {exc}", where=where) from None
