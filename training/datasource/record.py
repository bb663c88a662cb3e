"""Datasources: where the data is, its schema, row count, per-attribute statistics and checksum.

    ds = create_datasource("transactions.csv", target="Class")        # or s3://..., or a SQL URL
    ds.save("transactions.datasource.json"); print(ds.summary())
    for frame in read_frames(ds): ...                                  # typed chunks, checksum verified

One pass over the data computes everything (see ``profile.py`` for the memory bound: one chunk
of ``chunk_rows`` rows plus a fixed amount per attribute). Errors are DatasourceError and name
the file, row, column or key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from onyxserve.training.datasource.locations import Location, fetch, parse_location, sql_frames
from onyxserve.training.datasource.profile import ColumnProfile, Violations, canonical, row_priorities
from onyxserve.training.datasource.readers import FORMATS, detect_format, iter_frames
from onyxserve.training.datasource.schema import (
    MOSTLY_NUMERIC,
    WARN_NUMERIC,
    AttributeType,
    Schema,
    binary_token,
    load_schema,
    parse_schema,
)
from onyxserve.training.errors import DatasourceError, DatasourceWarning

DEFAULT_CHUNK_ROWS = 65_536
RECORD_KIND = "onyxserve.datasource"
RECORD_VERSION = 1

SchemaLike = Schema | Mapping[str, Any] | str | Path | None


@dataclass(frozen=True)
class Datasource:
    """The record of a datasource; ``to_dict`` is what ``datasource.json`` holds."""

    name: str
    location: Location
    data_format: str  # csv | tsv | jsonl | json | parquet | sql
    schema: Schema  # complete: every attribute typed, in column order
    row_count: int
    statistics: Mapping[str, Mapping[str, Any]]
    checksum: str  # sha256 hex
    checksum_of: str  # "bytes" or "canonical rows"
    violations: Mapping[str, Any]
    inferred: Mapping[str, str] = field(default_factory=dict)  # attribute -> inference rule used
    warnings: tuple[str, ...] = ()  # what inference was unsure of (schema.py, rules 4 and 6)
    size_bytes: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""

    @property
    def target(self) -> str | None:
        return self.schema.target

    @property
    def task(self) -> str | None:
        """binary | multiclass | regression, from the target's type; None without a target."""
        if self.schema.target is None:
            return None
        kind = self.schema.attributes[self.schema.target]
        if kind is AttributeType.BINARY:
            return "binary"
        if kind is AttributeType.NUMERIC:
            return "regression"
        return "binary" if self.statistics[self.schema.target].get("distinct") == 2 else "multiclass"

    def features(self) -> list[str]:
        """The attributes a model may use: all but the target, the row id and the excluded ones."""
        skip = {self.schema.target, self.schema.row_id, *self.schema.excluded}
        return [a for a in self.schema.attributes if a not in skip]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": RECORD_KIND,
            "recordVersion": RECORD_VERSION,
            "name": self.name,
            "created": self.created,
            "location": self.location.to_dict(),
            "dataFormat": self.data_format,
            "checksum": {"algorithm": "sha256", "value": self.checksum, "of": self.checksum_of},
            "sizeBytes": self.size_bytes,
            "rowCount": self.row_count,
            "task": self.task,
            "schema": self.schema.to_dict(),
            "inferred": dict(self.inferred),
            "warnings": list(self.warnings),
            "statistics": {k: dict(v) for k, v in self.statistics.items()},
            "violations": dict(self.violations),
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "datasource record") -> Datasource:
        if obj.get("kind") != RECORD_KIND:
            raise DatasourceError(
                f"not a datasource record (kind is {obj.get('kind')!r})", where=where, key="kind"
            )
        try:
            return cls(
                name=obj["name"],
                location=Location.from_dict(obj["location"]),
                data_format=obj["dataFormat"],
                schema=parse_schema(obj["schema"], where),
                row_count=int(obj["rowCount"]),
                statistics=obj["statistics"],
                checksum=obj["checksum"]["value"],
                checksum_of=obj["checksum"]["of"],
                violations=obj["violations"],
                inferred=obj.get("inferred", {}),
                warnings=tuple(obj.get("warnings", ())),  # records written before it: none
                size_bytes=obj.get("sizeBytes"),
                details=obj.get("details", {}),
                created=obj.get("created", ""),
            )
        except KeyError as exc:
            raise DatasourceError("missing field", where=where, key=str(exc.args[0])) from None

    def save(self, path: str | Path) -> Path:
        """Write the record as JSON (to a temporary name, then renamed into place)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    def summary(self) -> str:
        from onyxserve.training.datasource.summary import summarize

        return summarize(self)


def load_datasource(path: str | Path) -> Datasource:
    where = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasourceError(f"cannot read: {exc.strerror or exc}", where=where) from None
    except json.JSONDecodeError as exc:
        raise DatasourceError(f"not valid JSON at line {exc.lineno}: {exc.msg}", where=where) from None
    if not isinstance(obj, dict):
        raise DatasourceError("not a datasource record", where=where)
    return Datasource.from_dict(obj, where)


def _resolve_schema(schema: SchemaLike) -> Schema:
    if schema is None:
        return Schema()
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, Mapping):
        return parse_schema(dict(schema))
    return load_schema(schema)


class _Scan:
    """Opens a location and yields its raw chunks; afterwards holds the checksum and size."""

    def __init__(
        self,
        location: Location,
        schema: Schema,
        data_format: str | None,
        chunk_rows: int,
        s3_endpoint_url: str | None,
    ) -> None:
        self.location, self.schema, self.chunk_rows = location, schema, chunk_rows
        self.data_format, self.s3_endpoint_url = data_format, s3_endpoint_url
        self.checksum, self.checksum_of, self.size, self.details = "", "bytes", None, {}
        self.info: dict[str, Any] = {}
        self.where = location.uri

    def frames(self, stack: ExitStack) -> Iterator[pd.DataFrame]:
        if self.location.kind == "sql":
            self.data_format, self.checksum_of = "sql", "canonical rows"
            digest = hashlib.sha256()
            yield from sql_frames(self.location, self.chunk_rows, digest)
            self.checksum = digest.hexdigest()
            return
        content = stack.enter_context(fetch(self.location, s3_endpoint_url=self.s3_endpoint_url))
        self.checksum, self.size, self.details = content.sha256, content.size, dict(content.details)
        if self.data_format is None:
            self.data_format = detect_format(content.path, content.name)
        elif self.data_format not in FORMATS:
            raise DatasourceError(
                f"unknown format {self.data_format!r}; expected one of {FORMATS}",
                where=self.where,
                key="format",
            )
        names = list(self.schema.attributes) if self.schema.attributes else None
        yield from iter_frames(
            content.path,
            self.data_format,
            chunk_rows=self.chunk_rows,
            where=self.where,
            header=self.schema.contains_header,
            names=names,
            info=self.info,
        )


def create_datasource(
    location: str | Path | Location,
    *,
    schema: SchemaLike = None,
    target: str | None = None,
    row_id: str | None = None,
    exclude: Iterable[str] = (),
    name: str | None = None,
    query: str | None = None,
    data_format: str | None = None,
    header: bool | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    s3_endpoint_url: str | None = None,
) -> Datasource:
    """Read the data once and record its schema, row count, statistics and checksum.

    ``schema`` is a Schema, the dict of a schema file, or its path; ``target``, ``row_id``,
    ``exclude`` and ``header`` override it. ``query`` goes with a SQLAlchemy URL. Refuses
    (DatasourceError) an empty source, a schema naming unknown columns, and a target that is
    missing, never present, constant, or TEXT.
    """
    if chunk_rows < 1:
        raise DatasourceError("chunk_rows must be at least 1", key="chunk_rows")
    loc = location if isinstance(location, Location) else parse_location(str(location), query)
    declared = _resolve_schema(schema).with_overrides(
        target=target, row_id=row_id, excluded=exclude, contains_header=header
    )
    scan = _Scan(loc, declared, data_format, chunk_rows, s3_endpoint_url)
    profiles: dict[str, ColumnProfile] = {}
    violations = Violations()
    rows = 0
    with ExitStack() as stack:
        for frame in scan.frames(stack):
            frame = frame.reset_index(drop=True)
            if rows == 0 and scan.data_format not in ("json", "jsonl"):
                declared.check_columns(frame.columns, scan.where)  # fail before reading it all
            priority = row_priorities(rows, len(frame))
            for column in frame.columns:
                column = str(column)
                prof = profiles.get(column)
                if prof is None:
                    prof = profiles[column] = ColumnProfile(
                        column, len(profiles), declared.attributes.get(column), rows_before=rows
                    )
                prof.update(
                    frame[column], rows + 1, priority, violations, is_target=column == declared.target
                )
            for column in profiles.keys() - set(map(str, frame.columns)):
                profiles[column].missing += len(frame)
            rows += len(frame)
    if rows == 0:
        raise DatasourceError("the data has no rows", where=scan.where)
    declared.check_columns(profiles, scan.where)

    types: dict[str, AttributeType] = {}
    inferred: dict[str, str] = {}
    for column, prof in profiles.items():
        if column in declared.attributes:
            types[column] = declared.attributes[column]
        else:
            types[column], inferred[column] = prof.inferred()
    notes = []
    for column in inferred:
        note = _inference_note(profiles[column], types, violations, headerless=scan.info.get("header") is False)
        if note is not None:
            notes.append(note)
            warnings.warn(note, DatasourceWarning, stacklevel=2)
    statistics = {c: p.statistics(types[c]) for c, p in profiles.items()}
    if declared.target is not None:
        _check_target(declared.target, types[declared.target], profiles[declared.target], scan.where)
    full = replace(declared, attributes=types)
    full = replace(full, contains_header=scan.info.get("header"))  # as read (CSV only)
    return Datasource(
        name=name or _default_name(loc),
        location=loc,
        data_format=scan.data_format or "",
        schema=full,
        row_count=rows,
        statistics=statistics,
        checksum=scan.checksum,
        checksum_of=scan.checksum_of,
        violations=violations.to_dict(),
        inferred=inferred,
        warnings=tuple(notes),
        size_bytes=scan.size,
        details=scan.details,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


_SHOWN_VALUES = 5


def _inference_note(
    prof: ColumnProfile, types: dict[str, AttributeType], violations: Violations, *, headerless: bool
) -> str | None:
    """The warning for an inferred attribute whose values are partly numbers (schema.py's rules 4
    and 6), naming the column, the count, the first values with their rows and the schema entry
    that overrides the inference; for rule 4 the values are also listed as violations."""
    kind = types[prof.name]
    if prof.count == prof.numeric or prof.numeric == 0:
        return None
    if kind in (AttributeType.NUMERIC, AttributeType.BINARY):
        total, odd = prof.record_invalid(kind, violations)
        if total == 0:
            return None
        other = AttributeType.CATEGORICAL
        head = (
            f"column {prof.name!r}: inferred {kind.value}, but {total:,} of its {prof.count:,} values"
            f" {'is' if total == 1 else 'are'} not"
            f" {'0/1' if kind is AttributeType.BINARY else 'a number' if total == 1 else 'numbers'}"
        )
        they = "it is a schema violation" if total == 1 else "they are schema violations"
        tail = (
            f"; {they}, read as missing. Fix {'it' if total == 1 else 'them'}, or if the column is"
            f" not {kind.value.lower()}, declare it in the schema file (--schema): "
        )
    elif prof.numeric > WARN_NUMERIC * prof.count:
        total, odd = prof.count - prof.numeric, prof.odd
        other = AttributeType.NUMERIC
        head = (
            f"column {prof.name!r}: inferred {kind.value}, though {prof.numeric:,} of its {prof.count:,}"
            f" values ({prof.numeric / prof.count:.1%}) are numbers; {total:,} {'is' if total == 1 else 'are'} not"
        )
        they = "it" if total == 1 else "they"
        tail = (
            f" (under {MOSTLY_NUMERIC:.0%} numbers, so not counted as violations). If it is numeric,"
            f" declare it in the schema file (--schema), and {they} become{'s a violation' if total == 1 else ' violations'}"
            " read as missing: "
        )
    else:
        return None
    shown = ", ".join(f"row {row} {canonical(value)!r}" for row, value in odd[:_SHOWN_VALUES])
    more = f" (the first {_SHOWN_VALUES})" if total > _SHOWN_VALUES and len(odd) >= _SHOWN_VALUES else ""
    # a CSV without a header is matched to the schema's attributes by position: list them all
    names = list(types) if headerless else [prof.name]
    entry = {
        "attributes": [
            {"attributeName": n, "attributeType": (other if n == prof.name else types[n]).value} for n in names
        ]
    }
    return f"{head}: {shown}{more}{tail}{json.dumps(entry)}"


def _check_target(target: str, kind: AttributeType, prof: ColumnProfile, where: str) -> None:
    if prof.count == 0:
        raise DatasourceError("the target has no values in any row", where=where, column=target)
    if kind is AttributeType.TEXT:
        raise DatasourceError(
            "a TEXT attribute cannot be the target; declare it CATEGORICAL", where=where, column=target
        )
    constant = prof.distinct == 1 if kind is not AttributeType.NUMERIC else prof.min == prof.max
    if constant:
        value = next(iter(prof.counts.index)) if prof.counts is not None and len(prof.counts) else prof.min
        raise DatasourceError(
            f"the target is constant (every row has {value!r}); a model needs at least two values",
            where=where,
            column=target,
        )


def _default_name(loc: Location) -> str:
    if loc.kind == "sql":
        return "query"
    return Path(loc.uri.rstrip("/")).stem or "datasource"


# -- reading a datasource back ---------------------------------------------------------------
def typed(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """A raw chunk with each attribute in its schema type: NUMERIC and BINARY as float64
    (BINARY 0/1; invalid values NaN), CATEGORICAL and TEXT as text (missing as None)."""
    from onyxserve.training.datasource.profile import MISSING_TOKENS

    out = {}
    for column in frame.columns:
        s = frame[column]
        kind = schema.attributes.get(column, AttributeType.CATEGORICAL)
        is_text = s.dtype == object or isinstance(s.dtype, pd.StringDtype)
        missing = s.isna() | (s.isin(MISSING_TOKENS) if is_text else False)
        if kind is AttributeType.NUMERIC:
            values = pd.to_numeric(s.where(~missing), errors="coerce").astype(np.float64)
            out[column] = values.where(np.isfinite(values))
        elif kind is AttributeType.BINARY:
            uniq = {u: binary_token(u) for u in s[~missing].unique()}
            codes = {
                u: (np.nan if t is None else float(t in ("1", "true", "yes", "y", "t")))
                for u, t in uniq.items()
            }
            out[column] = s.map(codes).where(~missing).astype(np.float64)
        else:
            out[column] = pd.Series(
                [None if m else canonical(v) for v, m in zip(s.tolist(), missing.tolist())],
                index=s.index,
                dtype=object,
            )
    return pd.DataFrame(out, index=frame.index)


def read_frames(
    datasource: Datasource,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    columns: Iterable[str] | None = None,
    s3_endpoint_url: str | None = None,
    verify: bool = True,
) -> Iterator[pd.DataFrame]:
    """The datasource's rows again, typed by its schema, in chunks whose index is the 0-based row
    number. With ``verify``, data that no longer matches the recorded checksum is refused (for
    files before any row is yielded, for SQL after the last)."""
    scan = _Scan(
        datasource.location,
        datasource.schema,
        datasource.data_format if datasource.data_format != "sql" else None,
        chunk_rows,
        s3_endpoint_url,
    )
    wanted = list(columns) if columns is not None else list(datasource.schema.attributes)
    rows = 0
    with ExitStack() as stack:
        for frame in scan.frames(stack):
            if verify and rows == 0 and scan.checksum_of == "bytes" and scan.checksum != datasource.checksum:
                raise _changed(datasource)
            frame = frame.reindex(columns=wanted)
            frame.index = pd.RangeIndex(rows, rows + len(frame))
            rows += len(frame)
            yield typed(frame, datasource.schema)
    if verify and scan.checksum != datasource.checksum:
        raise _changed(datasource)


def _changed(ds: Datasource) -> DatasourceError:
    return DatasourceError(
        f"the data changed since datasource {ds.name!r} was created (sha256 no longer {ds.checksum[:12]}...);"
        " create the datasource again",
        where=ds.location.uri,
    )
