"""Row-by-row comparison of a shadow version's outputs with production's (pure numpy, no state).

Classifiers: does the served label agree, and |P_shadow - P_production| of the positive class
(binary: the last probability column, as ``evaluate`` and the decision threshold define it) or,
for multiclass, of the class production ranked first. Columns are matched by class label, so a
shadow trained with the classes in another order (or missing one: its P is 0) still compares.
Regression: |value difference| and the relative difference |d| / max(|s|, |p|): the usual
|d| / |p| for small differences, but bounded (0..2; 1 when one of them is 0, 2 for equal
magnitudes of opposite sign), so production answering 0 gives no infinity in the sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onyxserve.repository.manifest import Manifest


class CompareError(Exception):
    """The two versions' outputs cannot be compared (different tasks, shapes); says why."""


@dataclass(frozen=True)
class RowDiffs:
    rows: int
    agree: np.ndarray | None = None  # bool [N], classifiers
    probability_diff: np.ndarray | None = None  # float64 [N], classifiers
    value_diff: np.ndarray | None = None  # float64 [N], regression
    relative_diff: np.ndarray | None = None  # float64 [N], regression


class Comparer:
    """Built once per (production, shadow) pair: decides how their outputs line up."""

    def __init__(self, production: Manifest, shadow: Manifest) -> None:
        self.task = production.task
        p_regression, s_regression = production.task == "regression", shadow.task == "regression"
        if p_regression != s_regression:
            raise CompareError(f"production is a {production.task} model, shadow a {shadow.task} model")
        self.regression = p_regression
        if p_regression:
            return
        p_labels, s_labels = tuple(production.labels or ()), tuple(shadow.labels or ())
        s_index = {_key(v): i for i, v in enumerate(s_labels)}
        # production column -> shadow column holding the same class (-1: the shadow lacks it)
        self._columns = np.array([s_index.get(_key(v), -1) for v in p_labels], dtype=np.intp)
        self.binary = production.task == "binary"

    def compare(self, production: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> RowDiffs:
        if self.regression:
            return self._regression(production["value"], shadow["value"])
        return self._classification(production, shadow)

    def _regression(self, p: np.ndarray, s: np.ndarray) -> RowDiffs:
        p, s = _same_rows(p, s).astype(np.float64), s.reshape(-1).astype(np.float64)
        diff = np.abs(s - p)
        scale = np.maximum(np.abs(s), np.abs(p))
        relative = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        return RowDiffs(len(p), value_diff=diff, relative_diff=relative)

    def _classification(self, production: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> RowDiffs:
        p_prob, s_prob = production["probabilities"], shadow["probabilities"]
        if p_prob.shape[0] != s_prob.shape[0]:
            raise CompareError(f"production answered {p_prob.shape[0]} rows, shadow {s_prob.shape[0]}")
        rows = np.arange(p_prob.shape[0])
        p_col = np.full(len(rows), p_prob.shape[1] - 1) if self.binary else np.argmax(p_prob, axis=1)
        s_col = self._columns[p_col]
        s_p = np.where(s_col >= 0, s_prob[rows, np.maximum(s_col, 0)], 0.0).astype(np.float64)
        diff = np.abs(s_p - p_prob[rows, p_col].astype(np.float64))
        p_label, s_label = production["label"].reshape(-1), shadow["label"].reshape(-1)
        if p_label.dtype != s_label.dtype:  # e.g. int64 classes in one version, strings in the other
            agree = np.array([_key(a) == _key(b) for a, b in zip(p_label.tolist(), s_label.tolist())], dtype=bool)
        else:
            agree = np.asarray(p_label == s_label, dtype=bool)
        return RowDiffs(len(rows), agree=agree, probability_diff=diff)


def _same_rows(p: np.ndarray, s: np.ndarray) -> np.ndarray:
    p = p.reshape(-1)
    if p.shape != s.reshape(-1).shape:
        raise CompareError(f"production answered {p.shape[0]} values, shadow {s.reshape(-1).shape[0]}")
    return p


def _key(label) -> str:
    """Class labels compare by their text: 1, np.int64(1) and '1' are the same class."""
    if isinstance(label, bytes):
        return label.decode("utf-8", "replace")
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        return str(int(label))
    return str(label)
