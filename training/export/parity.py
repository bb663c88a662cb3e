"""The parity gate: a version is written only if it serves the pipeline's own scores.

Served scores come from ``OnnxScorer.score`` (the compiled normalization of the manifest, then
ONNX Runtime) on the sample rows, exactly as the server computes them. The rule:

- classifiers: ``|served_proba - predict_proba| <= 1e-5`` for every row and class (absolute),
  and the served label equals ``predict`` on every row whose two largest probabilities differ
  by more than ``2e-5`` (a tie within the tolerance may break either way);
- regressors: ``|served - predict| <= 1e-5 * max(|predict|, rms)`` per row, where ``rms`` is
  the root mean square of ``predict`` over the checked rows: relative 1e-5, with an absolute
  floor of 1e-5 of the predictions' own scale for values near zero (float32 inference cannot
  be relatively exact there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from onyxserve.core.normalizer import FeatureValueError, RowBlock
from onyxserve.core.scorer import OnnxScorer
from onyxserve.protos import v2bytes
from onyxserve.repository.manifest import Manifest
from onyxserve.training.errors import ExportError
from onyxserve.training.export.fold import category_str
from onyxserve.training.recipe.steps import text_str

PROBA_ATOL = 1e-5
VALUE_RTOL = 1e-5

Scores = dict[str, np.ndarray]  # "label" + "probabilities", or "value"
Predict = Callable[[pd.DataFrame], Scores]


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_error: float  # absolute
    tolerance: str
    worst_row: int
    labels_checked: int  # rows whose label was compared (ties excluded)

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "max_error": self.max_error,
            "tolerance": self.tolerance,
            "worst_row": self.worst_row,
            "labels_checked": self.labels_checked,
        }


@dataclass(frozen=True)
class Mismatch:
    row: int
    error: float
    tolerance: float
    detail: str


def row_block(manifest: Manifest, frame: pd.DataFrame) -> RowBlock:
    """The rows of ``frame`` as a client would send them: form A if all numeric, else form B."""
    names = list(manifest.feature_names)
    n = len(frame)
    if manifest.all_numeric:
        matrix = np.ascontiguousarray(frame[names].to_numpy(dtype=np.float64, na_value=np.nan))
        return RowBlock(n_rows=n, matrix=matrix)
    columns: list[np.ndarray | bytes] = []
    for f in manifest.features:
        series = frame[f.name]
        if f.is_text:
            columns.append(v2bytes.encode(text_str(v) for v in series.tolist()))
        elif f.is_categorical:
            columns.append(v2bytes.encode(category_str(v) for v in series.tolist()))
        else:
            columns.append(np.ascontiguousarray(series.to_numpy(dtype=np.float64, na_value=np.nan)))
    return RowBlock(n_rows=n, columns=columns)


def served_scores(scorer: OnnxScorer, frame: pd.DataFrame, what: str = "sample row") -> Scores:
    try:
        return scorer.score([row_block(scorer.manifest, frame)])
    except FeatureValueError as exc:
        raise ExportError(f"the served model rejects {what} {exc.row}: feature '{exc.feature}' {exc.reason}") from None


def compare_probabilities(expected: np.ndarray, served: np.ndarray, atol: float = PROBA_ATOL) -> Mismatch | None:
    expected = np.asarray(expected, dtype=np.float64)
    served = np.asarray(served, dtype=np.float64)
    if expected.shape != served.shape:
        return Mismatch(0, math.inf, atol, f"shape {served.shape} served, {expected.shape} expected")
    err = np.abs(served - expected)
    err = np.where(np.isnan(err), np.inf, err)  # a NaN on one side only is a mismatch
    err[np.isnan(served) & np.isnan(expected)] = 0.0
    per_row = err.max(axis=1) if err.size else err.reshape(0)
    if per_row.size == 0 or per_row.max() <= atol:
        return None
    row = int(np.argmax(per_row))
    return Mismatch(
        row, float(per_row[row]), atol, f"probabilities served {served[row].tolist()}, expected {expected[row].tolist()}"
    )


def compare_values(expected: np.ndarray, served: np.ndarray, rtol: float = VALUE_RTOL) -> Mismatch | None:
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    served = np.asarray(served, dtype=np.float64).reshape(-1)
    if expected.shape != served.shape:
        return Mismatch(0, math.inf, rtol, f"{served.size} values served, {expected.size} expected")
    finite = np.isfinite(expected)
    rms = float(np.sqrt(np.mean(expected[finite] ** 2))) if finite.any() else 0.0
    tol = rtol * np.maximum(np.abs(expected), rms)
    err = np.abs(served - expected)
    err = np.where(np.isnan(err), np.inf, err)
    with np.errstate(over="ignore"):  # a zero tolerance makes the ratio inf: a mismatch, as meant
        ratio = np.where(err == 0, 0.0, err / np.maximum(tol, np.finfo(np.float64).tiny))
    if ratio.size == 0 or ratio.max() <= 1.0:
        return None
    row = int(np.argmax(ratio))
    return Mismatch(row, float(err[row]), float(tol[row]), f"value served {float(served[row])!r}, expected {float(expected[row])!r}")


def compare_labels(
    expected: np.ndarray, served: np.ndarray, proba: np.ndarray, atol: float = PROBA_ATOL
) -> tuple[Mismatch | None, int]:
    """First label mismatch outside probability ties, and how many rows were compared."""
    proba = np.asarray(proba, dtype=np.float64)
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] >= 2 else np.zeros((len(proba), 2))
    decided = (top2[:, 1] - top2[:, 0]) > 2 * atol
    exp_list, srv_list = np.asarray(expected).tolist(), np.asarray(served).tolist()
    if len(exp_list) != len(srv_list):
        return Mismatch(0, math.inf, 0.0, f"{len(srv_list)} labels served, {len(exp_list)} expected"), 0
    for row in np.flatnonzero(decided):
        if exp_list[row] != srv_list[row]:
            return Mismatch(int(row), 1.0, 0.0, f"label served {srv_list[row]!r}, expected {exp_list[row]!r}"), 0
    return None, int(decided.sum())


def compare(task: str, expected: Scores, served: Scores) -> tuple[Mismatch | None, ParityReport]:
    n = len(next(iter(expected.values())))
    if task == "regression":
        bad = compare_values(expected["value"], served["value"])
        err = np.abs(np.asarray(served["value"], np.float64) - np.asarray(expected["value"], np.float64).reshape(-1))
        rule, checked = f"relative {VALUE_RTOL:g} (floor: {VALUE_RTOL:g} x rms of predictions)", 0
    else:
        bad = compare_probabilities(expected["probabilities"], served["probabilities"])
        err = np.abs(np.asarray(served["probabilities"], np.float64) - expected["probabilities"])
        err = err.max(axis=1) if err.ndim == 2 and err.size else err
        rule, checked = f"absolute {PROBA_ATOL:g} on probabilities", 0
        if bad is None:
            bad, checked = compare_labels(expected["label"], served["label"], expected["probabilities"])
    err = np.nan_to_num(np.asarray(err, dtype=np.float64).reshape(-1), nan=0.0)
    worst = int(np.argmax(err)) if err.size else 0
    report = ParityReport(n, float(err.max()) if err.size else 0.0, rule, worst, checked)
    return bad, report


def check_parity(
    task: str,
    scorer: OnnxScorer,
    frame: pd.DataFrame,
    predict: Predict,
    what: str = "sample row",
    expected: Scores | None = None,
    explain: Callable[[int], str | None] | None = None,
) -> ParityReport:
    """Score ``frame`` both ways (``expected``: the pipeline's scores if already computed);
    ExportError names the worst row, its error and the tolerance, and what ``explain(row)``
    says of it (the split threshold its value sits on, ``explain.split_explainer``)."""
    expected = predict(frame) if expected is None else expected
    served = served_scores(scorer, frame, what)
    bad, report = compare(task, expected, served)
    if bad is not None:
        why = explain(bad.row) if explain is not None else None
        raise ExportError(
            f"parity check failed on {what} {bad.row}: {bad.detail}; error {bad.error:.3g} exceeds tolerance"
            f" {bad.tolerance:.3g} ({report.tolerance}){f'; {why}' if why else ''}; nothing was written"
        )
    return report


def probe_missing(
    task: str, scorer: OnnxScorer, frame: pd.DataFrame, predict: Predict, rows: int = 8
) -> dict[str, str | None]:
    """For each numeric feature the served model accepts NaN in, score the first ``rows`` sample
    rows with that feature set to NaN both ways; returns feature -> failure message or None."""
    return {
        f.name: probe_feature(task, scorer, frame, predict, f.name, rows)
        for f in scorer.manifest.features
        if f.numeric is not None and (f.numeric.allow_nan or f.numeric.impute is not None)
    }


def probe_feature(
    task: str, scorer: OnnxScorer, frame: pd.DataFrame, predict: Predict, name: str, rows: int = 8
) -> str | None:
    """The NaN probe of one feature: None when both ways agree, else why not."""
    probe = frame.iloc[:rows].copy()
    probe[name] = np.nan
    try:
        check_parity(task, scorer, probe, predict, what=f"NaN probe of '{name}', row")
        return None
    except ExportError as exc:
        return str(exc)
    except Exception as exc:  # the pipeline itself cannot take NaN there
        return f"the pipeline cannot score NaN in '{name}': {exc}"
