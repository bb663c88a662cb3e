"""Find the first bad cell or row of a CSV that a typed read refused, to name it.

pyarrow's CSV errors name a column by its 0-based index and no row (``In CSV column #3: CSV
conversion error to double: invalid value '12,5mm'``); pandas' name a "line" that counts blank
lines but not the lines inside quoted fields. These helpers read the same bytes again, only
after the error and only as far as the first bad value, so the reading that succeeds pays
nothing: rows are 0-based data rows here (the header not counted, blank lines skipped, as both
readers count them); callers add 1 for their messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


def not_a(kind: pa.DataType, value: Any) -> str:
    if pa.types.is_floating(kind):
        return f"{value!r} is not a number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return f"{value!r} is not UTF-8 text"
    return f"{value!r} is not a {kind} value"


def bad_csv_cell(
    reopen: Callable[[], Any],
    parse_options: pacsv.ParseOptions,
    convert: pacsv.ConvertOptions,
    block_size: int,
    rows_before: int,
    names: Sequence[str],
) -> tuple[int, str, Any, pa.DataType] | None:
    """(0-based data row, column, value, declared type) of the first cell from ``rows_before``
    on that does not convert to the type ``convert`` declares for it, or None."""
    declared = dict(convert.column_types)
    position = {name: i for i, name in enumerate(names)}
    # file order (include_columns would impose its own), so a tie in a row goes to the left cell
    order = sorted((c for c in convert.include_columns if c in declared), key=lambda c: position.get(c, 0))
    read = pacsv.ReadOptions(block_size=block_size, use_threads=True, skip_rows_after_names=rows_before)
    as_bytes = pacsv.ConvertOptions(
        include_columns=order,
        column_types={c: pa.binary() for c in declared},
        strings_can_be_null=convert.strings_can_be_null,
    )
    with reopen() as stream:
        reader = pacsv.open_csv(stream, read_options=read, parse_options=parse_options, convert_options=as_bytes)
        return _first_bad_cell(reader, {c: declared[c] for c in order}, rows_before)


def bad_utf8_cell(
    reopen: Callable[[], Any], delimiter: str, columns: Sequence[str], *, header: bool, block_size: int = 1 << 20
) -> tuple[int, str, Any] | None:
    """(0-based data row, column, raw bytes) of the first cell that is not UTF-8, or None;
    ``columns`` are the file's, in order (a header's, or the names given to a headerless file)."""
    read = pacsv.ReadOptions(
        block_size=block_size, use_threads=True, column_names=list(columns), skip_rows=int(header)
    )
    as_bytes = pacsv.ConvertOptions(column_types={c: pa.binary() for c in columns})
    with reopen() as stream:
        reader = pacsv.open_csv(
            stream, read_options=read, parse_options=pacsv.ParseOptions(delimiter=delimiter), convert_options=as_bytes
        )
        found = _first_bad_cell(reader, {c: pa.string() for c in columns}, 0)
    return None if found is None else found[:3]


def _first_bad_cell(
    reader: Any, declared: dict[str, pa.DataType], first: int
) -> tuple[int, str, Any, pa.DataType] | None:
    """Scan ``reader``'s batches (columns of bytes, in file order) for the first cell that does
    not convert to its ``declared`` type; ``first`` is the data row the reader starts at."""
    row = first
    for batch in reader:
        hits = []
        for name, kind in declared.items():
            i = first_unconvertible(batch.column(name), kind)
            if i is not None:
                hits.append((i, name))
        if hits:
            i, name = min(hits, key=lambda h: h[0])  # min keeps the leftmost of a tie
            return row + i, name, _decoded(batch.column(name)[i].as_py()), declared[name]
        row += batch.num_rows
    return None


def _decoded(raw: bytes) -> Any:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _converts(values: pa.Array, kind: pa.DataType) -> bool:
    try:
        text = pc.cast(values, pa.string())  # validates UTF-8
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            pc.cast(pc.utf8_trim_whitespace(text), kind)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def first_unconvertible(values: pa.Array, kind: pa.DataType) -> int | None:
    """Index of the first value of ``values`` that does not convert to ``kind``, by bisection
    with pyarrow's own casts (about 2n values cast in all)."""
    if _converts(values, kind):
        return None
    lo, hi = 0, len(values)  # values[lo:hi] holds a bad value, values[:lo] none
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _converts(values.slice(lo, mid - lo), kind):
            lo = mid
        else:
            hi = mid
    return lo


def bad_csv_row(
    reopen: Callable[[], Any],
    delimiter: str,
    block_size: int = 1 << 20,
    *,
    header: bool = True,
    too_many_only: bool = False,
) -> tuple[int, str, int, int] | None:
    """(0-based data row, its text, expected fields, actual fields) of the first row whose
    number of fields differs from the first row's (``too_many_only``: exceeds it, what pandas
    refuses; it pads short rows), or None. Read on one thread from the start: only then does
    pyarrow number the rows it hands the handler."""
    found: list[Any] = []

    def handler(bad: Any) -> str:
        if too_many_only and bad.actual_columns < bad.expected_columns:
            return "skip"
        found.append(bad)
        return "error"  # stop at the first

    with reopen() as stream:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(
                    block_size=block_size, use_threads=False, autogenerate_column_names=not header
                ),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler),
                convert_options=pacsv.ConvertOptions(include_columns=[]),
            )
            for _ in reader:
                pass
        except pa.ArrowInvalid:
            pass  # the handler's "error": found holds the row
    if not found or found[0].number is None:
        return None
    bad = found[0]
    # pyarrow numbers the rows it parsed from 1, a header included
    return bad.number - 1 - int(header), bad.text, bad.expected_columns, bad.actual_columns
