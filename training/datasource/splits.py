"""Splits: Amazon ML's DataRearrangement, plus stratification for classification targets.

    {"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random",
                   "randomSeed": "s3cr3t", "complement": false, "stratified": true}}

- ``sequential``: rows whose position lies in [begin, end) percent of the row count
  (row ``i`` of ``n`` is in when ``floor(n*begin/100) <= i < floor(n*end/100)``).
- ``random``: each row gets a fixed pseudo-random number in [0, 100) from the seed and its row
  number; it is in when the number lies in [begin, end). Proportions are therefore close to,
  not exactly, end - begin, and a row's fate never depends on chunking or on other rows.
- ``stratified`` (our extension; random only): rows are ranked by that number within each
  class of the target and each class contributes exactly its [begin, end) share, so every split
  keeps the class balance -- which matters for a 0.2 % fraud class.
- ``complement`` selects every row the range does not, so the same begin/end with and without
  complement give two disjoint sets covering all rows (train / evaluation).

``randomSeed`` may also sit in ``strategyParams`` as in Amazon ML; any string or number works.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from onyxserve.training.errors import DatasourceError

_SPLIT_KEYS = {
    "percentBegin",
    "percentEnd",
    "strategy",
    "randomSeed",
    "complement",
    "strategyParams",
    "stratified",
}


@dataclass(frozen=True)
class Split:
    begin: float = 0.0
    end: float = 100.0
    strategy: str = "sequential"  # "sequential" | "random"
    seed: str = ""
    complement: bool = False
    stratified: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "percentBegin": self.begin,
            "percentEnd": self.end,
            "strategy": self.strategy,
            "complement": self.complement,
        }
        if self.strategy == "random":
            out["randomSeed"] = self.seed
            out["stratified"] = self.stratified
        return {"splitting": out}

    def complementary(self) -> Split:
        """The other side of this split (training <-> evaluation)."""
        return Split(self.begin, self.end, self.strategy, self.seed, not self.complement, self.stratified)


def parse_split(obj: Mapping[str, Any] | str, where: str = "DataRearrangement") -> Split:
    """A Split from a DataRearrangement (its JSON text or decoded dict); errors name the key."""
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise DatasourceError(f"not valid JSON: {exc.msg} at column {exc.colno}", where=where) from None
    if not isinstance(obj, Mapping) or set(obj) != {"splitting"} or not isinstance(obj["splitting"], Mapping):
        raise DatasourceError('expected {"splitting": {...}}', where=where, key="splitting")
    s = obj["splitting"]
    unknown = sorted(set(s) - _SPLIT_KEYS)
    if unknown:
        raise DatasourceError(
            f"unknown field; expected some of {sorted(_SPLIT_KEYS)}",
            where=where,
            key=f"splitting.{unknown[0]}",
        )

    def percent(key: str, default: float) -> float:
        value = s.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise DatasourceError(
                f"must be a number from 0 to 100, not {value!r}", where=where, key=f"splitting.{key}"
            )
        return float(value)

    begin, end = percent("percentBegin", 0), percent("percentEnd", 100)
    if begin > end:
        raise DatasourceError(
            f"percentBegin {begin:g} is after percentEnd {end:g}", where=where, key="splitting.percentBegin"
        )
    strategy = s.get("strategy", "sequential")
    if strategy not in ("sequential", "random"):
        raise DatasourceError(
            f"strategy must be 'sequential' or 'random', not {strategy!r}",
            where=where,
            key="splitting.strategy",
        )
    params = s.get("strategyParams", {})
    if not isinstance(params, Mapping) or set(params) - {"randomSeed"}:
        raise DatasourceError("only randomSeed is allowed here", where=where, key="splitting.strategyParams")
    seed = s.get("randomSeed", params.get("randomSeed", ""))
    for key in ("complement", "stratified"):
        if not isinstance(s.get(key, False), bool):
            raise DatasourceError("must be true or false", where=where, key=f"splitting.{key}")
    stratified = s.get("stratified", False)
    if stratified and strategy != "random":
        raise DatasourceError(
            "stratified splits need strategy 'random'", where=where, key="splitting.stratified"
        )
    return Split(begin, end, strategy, str(seed), s.get("complement", False), stratified)


def row_numbers(seed: str, first_row: int, n: int) -> np.ndarray:
    """Each row's fixed number in [0, 100): a keyed hash of the seed and the 0-based row number."""
    key = np.frombuffer(hashlib.sha256(seed.encode()).digest()[:8], dtype=np.uint64)[0]
    with np.errstate(over="ignore"):
        z = np.arange(first_row, first_row + n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (100.0 / 2.0**53)


def select(split: Split, n_rows: int, labels: Any = None) -> np.ndarray:
    """A boolean mask over ``n_rows`` rows: True where the split takes the row.

    ``labels`` (one per row; missing as NaN/None) is required for a stratified split; rows
    without a label are never taken by a stratified split nor by its complement.
    """
    if split.strategy == "sequential":
        i = np.arange(n_rows)
        inside = (i >= np.floor(n_rows * split.begin / 100)) & (i < np.floor(n_rows * split.end / 100))
    elif not split.stratified:
        u = row_numbers(split.seed, 0, n_rows)
        inside = (u >= split.begin) & (u < split.end)
    else:
        if labels is None:
            raise DatasourceError("a stratified split needs the target's values", key="splitting.stratified")
        labels = pd.Series(labels).reset_index(drop=True)
        if len(labels) != n_rows:
            raise DatasourceError(f"{len(labels)} labels for {n_rows} rows", key="labels")
        u = row_numbers(split.seed, 0, n_rows)
        inside = np.zeros(n_rows, dtype=bool)
        known = labels.notna().to_numpy()
        for idx in labels[known].groupby(labels[known], sort=True).indices.values():
            idx = np.flatnonzero(known)[idx]
            order = idx[np.argsort(u[idx], kind="stable")]
            lo, hi = int(np.floor(len(idx) * split.begin / 100)), int(np.floor(len(idx) * split.end / 100))
            inside[order[lo:hi]] = True
        return (~inside & known) if split.complement else inside
    return inside != split.complement


def split_frames(
    frames: Iterator[pd.DataFrame], split: Split, n_rows: int, labels: Any = None
) -> Iterator[pd.DataFrame]:
    """The rows of chunked ``frames`` (indexed by 0-based row number) that the split takes."""
    mask = None if split.strategy == "random" and not split.stratified else select(split, n_rows, labels)
    for frame in frames:
        rows = frame.index.to_numpy()
        if mask is None:
            u = row_numbers(split.seed, int(rows[0]), len(rows)) if len(rows) else np.empty(0)
            take = ((u >= split.begin) & (u < split.end)) != split.complement
        else:
            take = mask[rows]
        if take.any():
            yield frame[take]


def split_datasource(
    datasource: Any, split: Split | Mapping[str, Any] | str, **read_options: Any
) -> Iterator[pd.DataFrame]:
    """The typed rows of a datasource that a split selects, in chunks (index = row number).

    A stratified split reads the target column once first (one value per row in memory)."""
    from onyxserve.training.datasource.record import read_frames

    split = split if isinstance(split, Split) else parse_split(split)
    labels = None
    if split.stratified:
        target = datasource.schema.target
        if target is None or datasource.task == "regression":
            raise DatasourceError(
                "a stratified split needs a classification target",
                where=datasource.name,
                key="splitting.stratified",
            )
        labels = pd.concat([f[target] for f in read_frames(datasource, columns=[target], **read_options)])
    return split_frames(read_frames(datasource, **read_options), split, datasource.row_count, labels)
