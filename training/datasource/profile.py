"""One pass over a datasource's chunks: per-attribute statistics and schema violations.

Memory is bounded by the chunk plus, per attribute, at most ``DISTINCT_CAP`` tracked distinct
values and a ``SAMPLE_SIZE``-value sample for quantiles -- never by the number of rows. Every
result is independent of the chunk size: counts, min/max, distinct values and violations are
exact or chosen by row number, the quantile sample is the rows with the smallest hash of their
row number (the same rows whatever the chunking), and only mean/std can differ in the last bits
of floating point (they are merged per chunk with Chan's update).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from onyxserve.training.datasource.schema import AttributeType, binary_token, infer_type

# tokens read as a missing value (besides an absent field and JSON null)
MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?")
DISTINCT_CAP = 10_000  # distinct values tracked per attribute; past it distinct is a lower bound
NUMBER_DISTINCT_CAP = 1_000  # distinct numbers tracked for an attribute not declared as non-NUMERIC
SAMPLE_SIZE = 50_000  # values kept per numeric attribute for quantiles (exact up to this count)
VIOLATION_LIMIT = 100  # violations listed (the count is always exact)
TOP_VALUES = 10
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def row_priorities(start: int, n: int) -> np.ndarray:
    """splitmix64 of the row numbers: a fixed pseudo-random priority per row, for sampling."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def canonical(value: Any) -> str:
    """The text of a value as a category: numbers print without a needless '.0'."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return str(value)


@dataclass
class Violations:
    """Rows that break the schema: the first ``VIOLATION_LIMIT`` by row, and an exact count."""

    count: int = 0
    by_column: dict[str, int] = field(default_factory=dict)
    _rows: list[tuple[int, int, str, str]] = field(default_factory=list)  # (row, col index, col, reason)

    def add(
        self, rows: np.ndarray, col_index: int, column: str, reasons: list[str], total: int | None = None
    ) -> None:
        """``total``: how many there are when ``rows`` lists only the first of them."""
        total = len(rows) if total is None else total
        if total == 0:
            return
        self.count += total
        self.by_column[column] = self.by_column.get(column, 0) + total
        for row, reason in zip(rows[:VIOLATION_LIMIT].tolist(), reasons[:VIOLATION_LIMIT]):
            self._rows.append((row, col_index, column, reason))
        if len(self._rows) > 4 * VIOLATION_LIMIT:
            self._rows = sorted(self._rows)[:VIOLATION_LIMIT]

    def listed(self) -> list[dict[str, Any]]:
        return [
            {"row": r, "column": c, "reason": why} for r, _, c, why in sorted(self._rows)[:VIOLATION_LIMIT]
        ]

    def to_dict(self) -> dict[str, Any]:
        rows = self.listed()
        return {
            "count": self.count,
            "byColumn": dict(self.by_column),
            "rows": rows,
            "truncated": self.count > len(rows),
        }


class ColumnProfile:
    """Running statistics of one attribute under every type it could turn out to have."""

    def __init__(self, name: str, index: int, declared: AttributeType | None, rows_before: int = 0) -> None:
        self.name, self.index, self.declared = name, index, declared
        self.missing = rows_before  # a JSON key first seen late was missing in the earlier rows
        self.count = 0  # present values
        self.numeric = 0  # present values that are finite numbers
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._sample = np.empty(0, dtype=np.float64)
        self._priority = np.empty(0, dtype=np.uint64)
        # distinct values and their counts; None once past the cap (then distinct is a lower bound).
        # Numbers get a smaller cap unless the schema says the attribute is not NUMERIC.
        self.number_cap = (
            DISTINCT_CAP if declared not in (None, AttributeType.NUMERIC) else NUMBER_DISTINCT_CAP
        )
        self.number_counts: pd.Series | None = pd.Series(dtype=np.int64)
        self.text_counts: pd.Series | None = pd.Series(dtype=np.int64)
        self.text_count = 0
        self.length_sum = 0
        self.length_min = math.inf
        self.length_max = 0
        self.words_sum = 0
        self.invalid = 0
        # inferred attributes: the first values that are not finite numbers, (1-based row,
        # value), kept so that rule 4 (mostly numbers -> NUMERIC) can list them as violations
        # and warn with their rows once the whole column is seen
        self.odd: list[tuple[int, Any]] = []

    # -- one chunk ---------------------------------------------------------------------------
    def update(
        self,
        s: pd.Series,
        first_row: int,
        priority: np.ndarray,
        violations: Violations,
        is_target: bool = False,
    ) -> None:
        """Fold in one chunk; ``first_row`` is the 1-based row number of its first row."""
        values = s.to_numpy()
        missing = pd.isna(values)
        is_object = s.dtype == object or isinstance(s.dtype, pd.StringDtype)
        if is_object:
            missing |= s.isin(MISSING_TOKENS).to_numpy()
        present_idx = np.flatnonzero(~missing)
        self.missing += int(missing.sum())
        self.count += len(present_idx)
        if is_target and missing.any():
            rows = np.flatnonzero(missing) + first_row
            violations.add(rows, self.index, self.name, ["missing target value"] * len(rows))
        if len(present_idx) == 0:
            return
        present = s.iloc[present_idx]
        if is_object:
            numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            numbers = present.to_numpy(dtype=np.float64)
        finite = np.isfinite(numbers)
        self._update_numbers(numbers[finite], priority[present_idx[finite]])
        self._update_counts(present, numbers, finite)
        if is_object:
            texts = present if self.declared is AttributeType.TEXT else present[~finite]
            self._update_text(texts.astype(str))
        if self.declared is None and len(self.odd) < VIOLATION_LIMIT and not finite.all():
            bad = np.flatnonzero(~finite)[: VIOLATION_LIMIT - len(self.odd)]
            rows = (present_idx[bad] + first_row).tolist()
            self.odd.extend(zip(rows, present.iloc[bad].tolist()))
        self._check(present, present_idx, finite, first_row, violations)

    def _update_numbers(self, x: np.ndarray, priority: np.ndarray) -> None:
        if len(x) == 0:
            return
        n_a, n_b = self.numeric, len(x)
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.numeric = n
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        sample = np.concatenate([self._sample, x])
        prio = np.concatenate([self._priority, priority])
        if len(sample) > SAMPLE_SIZE:
            keep = np.argpartition(prio, SAMPLE_SIZE - 1)[:SAMPLE_SIZE]
            sample, prio = sample[keep], prio[keep]
        self._sample, self._priority = sample, prio

    def _update_counts(self, present: pd.Series, numbers: np.ndarray, finite: np.ndarray) -> None:
        # numbers are counted by value (so '1' and '1.0' are one value), the rest by their text
        if self.number_counts is not None:
            self.number_counts = _merge_counts(
                self.number_counts, pd.Series(numbers[finite]).value_counts(sort=False), self.number_cap
            )
        if self.text_counts is not None and not finite.all():
            others = present[~finite]
            if others.dtype != object:
                others = others.astype(object)
            vc = others.value_counts(sort=False)
            if len(vc) <= DISTINCT_CAP:
                vc.index = vc.index.map(canonical)
            self.text_counts = _merge_counts(self.text_counts, vc, DISTINCT_CAP)

    def _update_text(self, texts: pd.Series) -> None:
        if len(texts) == 0:
            return
        lengths = texts.str.len().to_numpy()
        words = texts.str.strip().str.count(r"\s+").to_numpy() + 1
        self.text_count += len(texts)
        self.length_sum += int(lengths.sum())
        self.length_min = min(self.length_min, int(lengths.min()))
        self.length_max = max(self.length_max, int(lengths.max()))
        self.words_sum += int(words.sum())

    def _check(
        self, present: pd.Series, idx: np.ndarray, finite: np.ndarray, first_row: int, violations: Violations
    ) -> None:
        if self.declared is AttributeType.NUMERIC:
            bad = np.flatnonzero(~finite)
            reasons = [_reason(self.declared, v) for v in present.iloc[bad[:VIOLATION_LIMIT]]]
        elif self.declared is AttributeType.BINARY:
            uniques = present.unique()
            wrong = [u for u in uniques if binary_token(u) is None]
            if not wrong:
                return
            bad = np.flatnonzero(present.isin(wrong).to_numpy())
            reasons = [_reason(self.declared, v) for v in present.iloc[bad[:VIOLATION_LIMIT]]]
        else:
            return
        self.invalid += len(bad)
        violations.add(idx[bad] + first_row, self.index, self.name, reasons)

    # -- results -----------------------------------------------------------------------------
    @property
    def counts(self) -> pd.Series | None:
        """Each distinct value's count (numbers as canonical text), or None past the caps."""
        if self.number_counts is None or self.text_counts is None:
            return None
        numbers = self.number_counts.copy()
        numbers.index = numbers.index.map(canonical)
        return pd.concat([numbers, self.text_counts]).groupby(level=0, sort=False).sum()

    @property
    def distinct(self) -> int | None:
        counts = self.counts
        return None if counts is None else len(counts)

    def inferred(self) -> tuple[AttributeType, str]:
        texts = max(self.text_count, 1)
        counts = self.counts
        return infer_type(
            count=self.count,
            numeric=self.numeric,
            distinct=None if counts is None else len(counts),
            values=None if counts is None else list(counts.index),
            mean_length=self.length_sum / texts,
            mean_words=self.words_sum / texts,
            numbers=None if self.number_counts is None else self.number_counts.index.tolist(),
        )

    def invalid_as(self, kind: AttributeType) -> tuple[int, list[tuple[int, Any]]]:
        """For an inferred NUMERIC or BINARY attribute: how many of its values are not valid
        for ``kind`` (exact), and the first of them as (1-based row, value)."""
        if kind is AttributeType.BINARY:
            # the numbers are 0/1 (rule 4); of the other values, 'yes'/'true' read as binary
            odd = [(r, v) for r, v in self.odd if binary_token(v) is None]
            if self.text_counts is not None:  # every value that is not a finite number, counted
                total = int(sum(c for v, c in self.text_counts.items() if binary_token(v) is None))
            else:
                total = self.count - self.numeric  # past the cap: an upper bound
            return total, odd
        return self.count - self.numeric, list(self.odd)

    def record_invalid(self, kind: AttributeType, violations: Violations) -> tuple[int, list[tuple[int, Any]]]:
        """Rule 4: list this inferred attribute's invalid values as violations (what a declared
        NUMERIC/BINARY attribute's check would have listed); returns ``invalid_as(kind)``."""
        total, odd = self.invalid_as(kind)
        if total:
            reasons = [_reason(kind, v) for _, v in odd]
            violations.add(np.array([r for r, _ in odd], dtype=np.int64), self.index, self.name, reasons, total)
            self.invalid = total
        return total, odd

    def statistics(self, kind: AttributeType) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": kind.value,
            "count": self.count - self.invalid,
            "missing": self.missing,
        }
        if self.invalid:
            out["invalid"] = self.invalid
        if kind is AttributeType.NUMERIC:
            n = self.numeric
            out.update(
                mean=self.mean if n else None,
                std=math.sqrt(self.m2 / (n - 1)) if n > 1 else None,
                min=self.min if n else None,
                max=self.max if n else None,
                quantiles={
                    f"p{round(q * 100):02d}": float(np.quantile(self._sample, q)) if n else None
                    for q in QUANTILES
                },
                quantilesExact=n <= SAMPLE_SIZE,
            )
            return out
        counts = self.counts
        if counts is None:
            seen = [c for c in (self.number_counts, self.text_counts) if c is not None]
            out["distinct"] = max(
                self.number_cap if self.number_counts is None else 0,
                DISTINCT_CAP if self.text_counts is None else 0,
                *map(len, seen),
            )
        else:
            out["distinct"] = len(counts)
        out["distinctExact"] = counts is not None
        if counts is not None:
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
            out["top"] = [[k, int(v)] for k, v in top]
        if kind is AttributeType.TEXT:
            t = self.text_count
            out["length"] = {
                "min": self.length_min if t else None,
                "mean": self.length_sum / t if t else None,
                "max": self.length_max if t else None,
            }
            out["meanWords"] = self.words_sum / t if t else None
        return out


def _reason(kind: AttributeType, value: Any) -> str:
    if kind is AttributeType.BINARY:
        return f"not a binary value (0/1, true/false, yes/no, y/n, t/f): {canonical(value)!r}"
    return f"not a finite number: {canonical(value)!r}"


def _merge_counts(counts: pd.Series, more: pd.Series, cap: int) -> pd.Series | None:
    """counts + more, or None when the union has more than ``cap`` distinct values."""
    if len(more) > cap:
        return None
    if len(more) and more.index.has_duplicates:
        more = more.groupby(level=0, sort=False).sum()
    merged = counts.add(more, fill_value=0).astype(np.int64) if len(counts) else more.astype(np.int64)
    return None if len(merged) > cap else merged
