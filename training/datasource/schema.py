"""Datasource schemas: attribute types, the target, row id and exclusions (Amazon ML's format).

A schema file is JSON with Amazon Machine Learning's fields::

    {"version": "1.0", "targetAttributeName": "Class", "rowId": "id",
     "excludedAttributeNames": ["Time"], "dataFileContainsHeader": true,
     "attributes": [{"attributeName": "Amount", "attributeType": "NUMERIC"}, ...]}

Every field is optional. Attributes the file does not list are inferred from the data (see
``infer_type``); the ones it lists override inference. For a CSV without a header, a schema that
lists attributes names the columns in file order.

Inference rules, applied in order to an attribute's non-missing values:

1. no values at all -> CATEGORICAL;
2. values that are exactly the two of one of the pairs 0/1, true/false, yes/no, y/n, t/f
   (case-insensitive; 0.0/1.0 count as 0/1) -> BINARY;
3. every value parses as a finite number -> NUMERIC;
4. at least 95% (``MOSTLY_NUMERIC``) of the values are finite numbers -> NUMERIC, or BINARY
   when those numbers are exactly 0 and 1; the other values (``12,5mm``, ``n.a.``) are schema
   violations, read back as missing, and a DatasourceWarning names the column, how many they
   are and the first five with their rows;
5. many distinct values (more than half of the values, or more than the profiler tracks) that
   are long (on average 20+ characters or 3+ words) -> TEXT;
6. otherwise -> CATEGORICAL; when most of the values (more than half) are numbers, a
   DatasourceWarning says so and shows the schema entry that makes the attribute NUMERIC.

Why 95%: one stray value (a unit typed into one cell, a decimal comma) used to turn a numeric
column into a CATEGORICAL one with a category per number, silently. A column where more than 5%
of the values are not numbers is more likely a code or an identifier that mixes both; it stays
CATEGORICAL, with the warning. Amazon ML publishes no threshold (its console infers with
"simple rules" and asks you to review the schema); its Data Insights count the "invalid values"
of a numeric attribute, which is what these violations are. A schema file always wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from onyxserve.training.errors import DatasourceError


class AttributeType(str, Enum):
    NUMERIC = "NUMERIC"
    CATEGORICAL = "CATEGORICAL"
    TEXT = "TEXT"
    BINARY = "BINARY"


# token -> value for the recognised binary spellings; a BINARY attribute may use one pair only
_BINARY_PAIRS = (("0", "1"), ("false", "true"), ("no", "yes"), ("n", "y"), ("f", "t"))
BINARY_TOKENS = {tok: i for pair in _BINARY_PAIRS for i, tok in enumerate(pair)}

MOSTLY_NUMERIC = 0.95  # share of numbers above which the others are violations (rule 4)
WARN_NUMERIC = 0.5  # share of numbers above which a non-numeric inference warns (rule 6)
TEXT_MIN_LENGTH = 20
TEXT_MIN_WORDS = 3
TEXT_MIN_DISTINCT_RATIO = 0.5

_SCHEMA_KEYS = {
    "version",
    "targetAttributeName",
    "rowId",
    "rowWeight",
    "excludedAttributeNames",
    "attributes",
    "dataFormat",
    "dataFileContainsHeader",
}


def binary_token(value: Any) -> str | None:
    """The canonical binary token ('0'/'1', 'true'/'false', ...) of a value, or None."""
    text = str(value).strip().lower()
    if text in BINARY_TOKENS:
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    return "0" if number == 0.0 else "1" if number == 1.0 else None


def binary_pair(values: Iterable[Any]) -> tuple[str, str] | None:
    """The pair (false-token, true-token) the values form, or None if they form none."""
    tokens = {binary_token(v) for v in values}
    for pair in _BINARY_PAIRS:
        if tokens == set(pair):
            return pair
    return None


@dataclass(frozen=True)
class Schema:
    """What each attribute is. ``attributes`` keeps column order; types not given are inferred."""

    attributes: Mapping[str, AttributeType] = field(default_factory=dict)
    target: str | None = None
    row_id: str | None = None
    excluded: tuple[str, ...] = ()
    contains_header: bool | None = None
    version: str = "1.0"

    def with_overrides(
        self,
        *,
        target: str | None = None,
        row_id: str | None = None,
        excluded: Iterable[str] = (),
        contains_header: bool | None = None,
    ) -> Schema:
        """This schema with command-line choices applied on top (they win over the file)."""
        return replace(
            self,
            target=target if target is not None else self.target,
            row_id=row_id if row_id is not None else self.row_id,
            excluded=tuple(dict.fromkeys([*self.excluded, *excluded])),
            contains_header=contains_header if contains_header is not None else self.contains_header,
        )

    def named_columns(self) -> list[str]:
        """Every column the schema mentions (for checking against the data)."""
        names = list(self.attributes)
        for extra in (self.target, self.row_id, *self.excluded):
            if extra is not None and extra not in names:
                names.append(extra)
        return names

    def check_columns(self, columns: Iterable[str], where: str) -> None:
        """Refuse a schema that names a column the data does not have."""
        present = set(columns)
        for name in self.named_columns():
            if name not in present:
                key = (
                    "targetAttributeName"
                    if name == self.target
                    else "rowId"
                    if name == self.row_id
                    else "excludedAttributeNames"
                    if name in self.excluded
                    else "attributes"
                )
                shown = ", ".join(sorted(present)[:20]) + (" ..." if len(present) > 20 else "")
                raise DatasourceError(
                    f"the schema names column {name!r} ({key}) but the data has no such column;"
                    f" its columns are: {shown}",
                    where=where,
                    column=name,
                )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        out["targetAttributeName"] = self.target
        if self.row_id is not None:
            out["rowId"] = self.row_id
        out["excludedAttributeNames"] = list(self.excluded)
        if self.contains_header is not None:
            out["dataFileContainsHeader"] = self.contains_header
        out["attributes"] = [
            {"attributeName": name, "attributeType": kind.value} for name, kind in self.attributes.items()
        ]
        return out


def parse_schema(obj: Any, where: str = "schema") -> Schema:
    """A Schema from the decoded JSON of an Amazon-ML-style schema file; errors name the key."""
    if not isinstance(obj, dict):
        raise DatasourceError(f"a schema must be a JSON object, not {type(obj).__name__}", where=where)
    unknown = sorted(set(obj) - _SCHEMA_KEYS)
    if unknown:
        raise DatasourceError(
            f"unknown schema field; expected some of {sorted(_SCHEMA_KEYS)}", where=where, key=unknown[0]
        )
    attributes: dict[str, AttributeType] = {}
    raw_attrs = obj.get("attributes", [])
    if not isinstance(raw_attrs, list):
        raise DatasourceError(
            "must be a list of {attributeName, attributeType}", where=where, key="attributes"
        )
    for i, item in enumerate(raw_attrs):
        key = f"attributes[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("attributeName"), str):
            raise DatasourceError("needs a string attributeName", where=where, key=key)
        extra = sorted(set(item) - {"attributeName", "attributeType"})
        if extra:
            raise DatasourceError(f"unknown field {extra[0]!r}", where=where, key=key)
        name, kind = item["attributeName"], item.get("attributeType")
        if name in attributes:
            raise DatasourceError("attribute listed twice", where=where, key=key, column=name)
        try:
            attributes[name] = AttributeType(str(kind).upper())
        except ValueError:
            raise DatasourceError(
                f"attributeType {kind!r} is not one of {[t.value for t in AttributeType]}",
                where=where,
                key=key,
                column=name,
            ) from None
    excluded = obj.get("excludedAttributeNames", [])
    if not isinstance(excluded, list) or not all(isinstance(x, str) for x in excluded):
        raise DatasourceError("must be a list of names", where=where, key="excludedAttributeNames")
    for key in ("targetAttributeName", "rowId"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise DatasourceError("must be a string", where=where, key=key)
    header = obj.get("dataFileContainsHeader")
    if header is not None and not isinstance(header, bool):
        raise DatasourceError("must be true or false", where=where, key="dataFileContainsHeader")
    fmt = obj.get("dataFormat")
    if fmt is not None and str(fmt).upper() != "CSV":
        raise DatasourceError("only CSV is described by dataFormat", where=where, key="dataFormat")
    if "rowWeight" in obj:
        raise DatasourceError("row weights are not supported", where=where, key="rowWeight")
    schema = Schema(
        attributes=attributes,
        target=obj.get("targetAttributeName"),
        row_id=obj.get("rowId"),
        excluded=tuple(excluded),
        contains_header=header,
        version=str(obj.get("version", "1.0")),
    )
    _check_roles(schema, where)
    return schema


def _check_roles(schema: Schema, where: str) -> None:
    if schema.target is not None and schema.target == schema.row_id:
        raise DatasourceError("the target cannot also be the row id", where=where, column=schema.target)
    if schema.target is not None and schema.target in schema.excluded:
        raise DatasourceError("the target cannot be excluded", where=where, column=schema.target)


def load_schema(path: str | Path) -> Schema:
    """Read and check a schema file; errors name the file and the offending key."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasourceError(f"cannot read schema file: {exc.strerror or exc}", where=where) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasourceError(
            f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", where=where
        ) from None
    return parse_schema(obj, where)


def infer_type(
    *,
    count: int,
    numeric: int,
    distinct: int | None,
    values: Iterable[Any] | None,
    mean_length: float,
    mean_words: float,
    numbers: Iterable[float] | None = None,
) -> tuple[AttributeType, str]:
    """The inferred type of an attribute and the rule that chose it (see the module docstring).

    ``count`` non-missing values, ``numeric`` of which parse as finite numbers; ``distinct`` is
    None when there were more distinct values than the profiler tracks; ``values`` are the
    distinct values when known; ``numbers`` the distinct numbers when known (for rule 4's 0/1);
    lengths and words are over the non-numeric values.
    """
    if count == 0:
        return AttributeType.CATEGORICAL, "no values"
    if distinct is not None and distinct <= 8 and values is not None and binary_pair(values) is not None:
        return AttributeType.BINARY, "two values forming a binary pair"
    if numeric == count:
        return AttributeType.NUMERIC, "every value is a number"
    if numeric >= MOSTLY_NUMERIC * count:
        share = f"{numeric:,} of {count:,} values ({numeric / count:.1%}) are numbers"
        if numbers is not None and set(numbers) == {0.0, 1.0}:
            return AttributeType.BINARY, f"{share}, all 0 or 1; the others are violations"
        return AttributeType.NUMERIC, f"{share}; the others are violations"
    many = distinct is None or distinct > TEXT_MIN_DISTINCT_RATIO * count
    if many and (mean_length >= TEXT_MIN_LENGTH or mean_words >= TEXT_MIN_WORDS):
        return AttributeType.TEXT, "many distinct long strings"
    return AttributeType.CATEGORICAL, "strings with few distinct values" if not many else "short strings"
