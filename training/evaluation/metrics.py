"""Evaluation: the metrics of a model on labelled rows, each beside the Amazon ML baseline.

    result = evaluate(y_true, proba, "binary", labels=[0, 1], target="precision>=0.9")
    result.metrics["auc"], result.baseline["auc"], result.threshold
    result.with_threshold(0.3)        # the same scores, another operating point

    outcome = evaluate_version("models/fraud/3", "valid.csv", "Class")   # the served path

Every metric is computed by the scikit-learn function of the same name, so the numbers are
scikit-learn's. The baseline is the model Amazon ML compares against: a constant score (AUC 0.5)
predicting the majority class for classifiers, the mean for regression; its metrics come from
the same functions, applied to its predictions.

Binary: predicted positive iff the positive class's probability ``>= threshold``; the positive
class is ``labels[-1]`` (the last probability column, as in scikit-learn).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from onyxserve.repository.store import EVALUATION_FILE, registry_path, version_repository
from onyxserve.training.errors import EvaluationError
from sklearn import metrics as skm

TASKS = ("binary", "multiclass", "regression")
_TARGET = re.compile(r"^\s*(precision|recall|fpr|tpr)\s*(>=|<=)\s*([0-9.eE+-]+)\s*(%?)\s*$")


@dataclass(frozen=True)
class ThresholdTarget:
    metric: str  # precision | recall | fpr
    op: str  # >= | <=
    value: float

    @classmethod
    def parse(cls, text: str) -> ThresholdTarget:
        m = _TARGET.match(text)
        if not m:
            raise EvaluationError(
                f"threshold target {text!r}: write e.g. 'precision>=0.9', 'recall>=0.8' or 'fpr<=0.01' (or 1%)"
            )
        metric, op, value, pct = m.groups()
        metric = "recall" if metric == "tpr" else metric
        v = float(value) / (100 if pct else 1)
        if not 0 <= v <= 1:
            raise EvaluationError(f"threshold target {text!r}: the value must be within [0, 1]")
        return cls(metric, op, v)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class EvaluationResult:
    task: str
    n_rows: int
    metrics: dict[str, float]
    baseline: dict[str, float]  # the same metrics for the Amazon ML baseline model
    confusion: list[list[int]]  # rows: true class, columns: predicted (classifiers)
    labels: list[Any] | None = None  # class labels, in confusion/probability order
    threshold: float | None = None  # binary
    threshold_target: str | None = None  # binary: what the threshold was chosen to meet
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)  # multiclass
    residuals: dict[str, float] = field(default_factory=dict)  # regression
    # the evaluated arrays (kept for thresholds and plots; not serialized)
    y_true: np.ndarray | None = field(default=None, repr=False, compare=False)
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)

    def threshold_for(self, target: str | ThresholdTarget) -> float:
        """The threshold meeting ``target`` with the most positives caught: the lowest threshold
        with precision >= p (or fpr <= f), the highest with recall >= r."""
        self._require_binary("threshold_for")
        return threshold_for(label_indices(self.y_true, self.labels), self.scores, target)

    def with_threshold(
        self, threshold: float | None = None, *, target: str | None = None
    ) -> EvaluationResult:
        """The same scores evaluated at another threshold (or at the one meeting ``target``)."""
        self._require_binary("with_threshold")
        return evaluate(
            self.y_true,
            self.scores,
            "binary",
            labels=self.labels,
            threshold=0.5 if threshold is None else threshold,
            target=target,
        )

    def _require_binary(self, what: str) -> None:
        if self.task != "binary" or self.scores is None:
            raise EvaluationError(f"{what} applies to binary results that kept their scores")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "rows": self.n_rows,
            "metrics": self.metrics,
            "baseline": self.baseline,
        }
        if self.task != "regression":
            out["labels"] = [_plain(x) for x in self.labels]
            out["confusion_matrix"] = self.confusion
        if self.task == "binary":
            out["threshold"] = self.threshold
            out["threshold_target"] = self.threshold_target
        if self.per_class:
            out["per_class"] = self.per_class
        if self.residuals:
            out["residuals"] = self.residuals
        return out

    def summary(self) -> str:
        lines = [f"{self.task} evaluation on {self.n_rows:,} rows"]
        if self.threshold is not None:
            lines[0] += f", threshold {self.threshold:.6g}" + (
                f" (chosen for {self.threshold_target})" if self.threshold_target else ""
            )
        lines.append(f"  {'metric':22}{'model':>12}{'baseline':>12}")
        for key, value in self.metrics.items():
            base = self.baseline.get(key)
            lines.append(f"  {key:22}{value:12.4f}" + (f"{base:12.4f}" if base is not None else ""))
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _key(value: Any) -> str:
    """Compare labels across int/float/str spellings: 1, 1.0, '1' and True are the same class."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def label_indices(y_true: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """Each true value's index in ``labels``; EvaluationError names values that are not labels."""
    index = {_key(lab): i for i, lab in enumerate(labels)}
    y = np.asarray(y_true)
    uniques, inverse = np.unique(y.astype(object) if y.dtype.kind == "O" else y, return_inverse=True)
    mapped = np.array([index.get(_key(u), -1) for u in uniques], dtype=np.int64)
    if (mapped < 0).any():
        unknown = [_plain(u) for u, m in zip(uniques, mapped) if m < 0][:5]
        raise EvaluationError(f"true values {unknown} are not among the model's labels {list(labels)}")
    return mapped[inverse.reshape(-1)]


def evaluate(
    y_true: Sequence[Any],
    scores: Any,
    task: str,
    labels: Sequence[Any] | None = None,
    threshold: float = 0.5,
    target: str | None = None,
    *,
    predictions: Sequence[Any] | None = None,
) -> EvaluationResult:
    """Metrics of ``scores`` against ``y_true``.

    binary: ``scores`` are the positive class's probabilities ``[N]`` (or all of them ``[N, 2]``);
    ``target`` (e.g. 'precision>=0.9') chooses the threshold instead of ``threshold``.
    multiclass: probabilities ``[N, C]`` in ``labels`` order, or predicted labels ``[N]``;
    ``predictions`` overrides the argmax (e.g. the served labels).
    regression: predicted values ``[N]``.
    """
    if task not in TASKS:
        raise EvaluationError(f"task must be one of {TASKS}, got {task!r}")
    y = np.asarray(y_true)
    if y.ndim != 1 or len(y) == 0:
        raise EvaluationError(f"y_true must be a non-empty 1-D array, got shape {y.shape}")
    if task == "regression":
        return _regression(y, np.asarray(scores, dtype=np.float64).reshape(-1))
    if task == "binary":
        return _binary(y, scores, labels, threshold, target)
    return _multiclass(y, scores, labels, predictions)


def _check_len(y: np.ndarray, s: np.ndarray, what: str) -> None:
    if len(s) != len(y):
        raise EvaluationError(f"{len(s)} {what} for {len(y)} true values")


def _binary(y: np.ndarray, scores: Any, labels: Sequence[Any] | None, threshold: float, target: str | None):
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2:
        if s.shape[1] != 2:
            raise EvaluationError(f"binary probabilities must be [N, 2], got {s.shape}")
        s = s[:, 1]
    s = s.reshape(-1)
    _check_len(y, s, "scores")
    if labels is None:
        labels = sorted(np.unique(y).tolist(), key=_key) if len(np.unique(y)) == 2 else [0, 1]
    if len(labels) != 2:
        raise EvaluationError(f"a binary model has 2 labels, got {list(labels)}")
    y01 = label_indices(y, labels)
    chosen = None
    if target is not None:
        chosen = str(ThresholdTarget.parse(target))
        threshold = threshold_for(y01, s, target)
    pred = (s >= threshold).astype(np.int64)
    both = len(np.unique(y01)) == 2
    cm = skm.confusion_matrix(y01, pred, labels=[0, 1])
    tn, fp = int(cm[0, 0]), int(cm[0, 1])
    m = {
        "auc": float(skm.roc_auc_score(y01, s)) if both else math.nan,
        "average_precision": float(skm.average_precision_score(y01, s)) if both else math.nan,
        "accuracy": float(skm.accuracy_score(y01, pred)),
        "precision": float(skm.precision_score(y01, pred, zero_division=0)),
        "recall": float(skm.recall_score(y01, pred, zero_division=0)),
        "f1": float(skm.f1_score(y01, pred, zero_division=0)),
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
    }
    # baseline: a constant score (the positive rate), predicting the majority class
    majority = int(y01.mean() > 0.5)
    base_pred = np.full_like(y01, majority)
    bcm = skm.confusion_matrix(y01, base_pred, labels=[0, 1])
    base = {
        "auc": 0.5,
        "average_precision": float(y01.mean()),
        "accuracy": float(skm.accuracy_score(y01, base_pred)),
        "precision": float(skm.precision_score(y01, base_pred, zero_division=0)),
        "recall": float(skm.recall_score(y01, base_pred, zero_division=0)),
        "f1": float(skm.f1_score(y01, base_pred, zero_division=0)),
        "false_positive_rate": float(bcm[0, 1] / max(bcm[0, 0] + bcm[0, 1], 1)),
    }
    return EvaluationResult(
        task="binary",
        n_rows=len(y),
        metrics=m,
        baseline=base,
        confusion=cm.tolist(),
        labels=[_plain(x) for x in labels],
        threshold=float(threshold),
        threshold_target=chosen,
        y_true=y,
        scores=s,
    )


def threshold_for(y_true: np.ndarray, scores: np.ndarray, target: str | ThresholdTarget) -> float:
    """The threshold (a score value; positive iff ``score >= threshold``) meeting ``target``.
    ``y_true``: 0/1, 1 = positive."""
    t = target if isinstance(target, ThresholdTarget) else ThresholdTarget.parse(target)
    y = np.asarray(y_true)
    if y.dtype.kind not in "biuf" or not set(np.unique(y).tolist()) <= {0, 1}:
        raise EvaluationError(
            "threshold_for needs 0/1 true values (1 = positive); map labels with label_indices"
        )
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(np.int64)
    # candidate thresholds: each distinct score; counts of rows with score >= it
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    cand = s_sorted[last]
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        value = {
            "precision": tp / (tp + fp),
            "recall": tp / pos if pos else np.zeros_like(tp, dtype=float),
            "fpr": fp / neg if neg else np.zeros_like(fp, dtype=float),
        }[t.metric]
    ok = value >= t.value - 1e-12 if t.op == ">=" else value <= t.value + 1e-12
    if t.metric == "fpr" and t.op == "<=" and not ok.any():
        return float(np.nextafter(s_sorted[0], np.inf))  # nothing positive: FPR 0
    if not ok.any():
        best = np.nanmax(value) if t.op == ">=" else np.nanmin(value)
        raise EvaluationError(f"no threshold meets {t}: the best {t.metric} these scores reach is {best:.4g}")
    # most positives caught: the lowest qualifying threshold (the last index, scores descend),
    # except for a recall floor, where the highest qualifying one keeps precision up
    idx = np.flatnonzero(ok)
    pick = idx[0] if t.metric == "recall" else idx[-1]
    return float(cand[pick])


def _multiclass(y: np.ndarray, scores: Any, labels: Sequence[Any] | None, predictions: Any):
    s = np.asarray(scores)
    proba = None
    if s.ndim == 2:
        if labels is None or len(labels) != s.shape[1]:
            raise EvaluationError(f"probabilities [N, {s.shape[1]}] need {s.shape[1]} labels in column order")
        proba = s.astype(np.float64)
        _check_len(y, proba, "probability rows")
        pred_idx = proba.argmax(axis=1)
    else:
        if labels is None:
            labels = sorted({*np.unique(y).tolist(), *np.unique(s).tolist()}, key=_key)
        _check_len(y, s, "predictions")
        pred_idx = label_indices(s, labels)
    if predictions is not None:
        pred_idx = label_indices(np.asarray(predictions), labels)
        _check_len(y, pred_idx, "predictions")
    labels = [_plain(x) for x in labels]
    yi = label_indices(y, labels)
    ks = list(range(len(labels)))
    cm = skm.confusion_matrix(yi, pred_idx, labels=ks)
    m = {
        "accuracy": float(skm.accuracy_score(yi, pred_idx)),
        "f1_macro": float(skm.f1_score(yi, pred_idx, labels=ks, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(yi, pred_idx, labels=ks, average="weighted", zero_division=0)),
        "precision_macro": float(
            skm.precision_score(yi, pred_idx, labels=ks, average="macro", zero_division=0)
        ),
        "recall_macro": float(skm.recall_score(yi, pred_idx, labels=ks, average="macro", zero_division=0)),
    }
    if proba is not None and len(np.unique(yi)) == len(labels):
        m["auc_ovr_macro"] = float(skm.roc_auc_score(yi, proba, multi_class="ovr", labels=ks))
    p, r, f, support = skm.precision_recall_fscore_support(yi, pred_idx, labels=ks, zero_division=0)
    per_class = {
        str(lab): {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
        }
        for i, lab in enumerate(labels)
    }
    majority = int(np.bincount(yi, minlength=len(labels)).argmax())
    bp = np.full_like(yi, majority)
    base = {
        "accuracy": float(skm.accuracy_score(yi, bp)),
        "f1_macro": float(skm.f1_score(yi, bp, labels=ks, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(yi, bp, labels=ks, average="weighted", zero_division=0)),
        "precision_macro": float(skm.precision_score(yi, bp, labels=ks, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(yi, bp, labels=ks, average="macro", zero_division=0)),
    }
    if "auc_ovr_macro" in m:
        base["auc_ovr_macro"] = 0.5
    return EvaluationResult(
        task="multiclass",
        n_rows=len(y),
        metrics=m,
        baseline=base,
        confusion=cm.tolist(),
        labels=labels,
        per_class=per_class,
        y_true=y,
        scores=proba if proba is not None else s,
    )


def _regression(y: np.ndarray, pred: np.ndarray) -> EvaluationResult:
    yf = y.astype(np.float64)
    _check_len(yf, pred, "predictions")
    if not (np.isfinite(yf).all() and np.isfinite(pred).all()):
        raise EvaluationError("regression needs finite true values and predictions")
    m = {
        "rmse": float(skm.root_mean_squared_error(yf, pred)),
        "mae": float(skm.mean_absolute_error(yf, pred)),
        "r2": float(skm.r2_score(yf, pred)) if len(yf) > 1 else math.nan,
    }
    mean_pred = np.full_like(yf, yf.mean())
    base = {
        "rmse": float(skm.root_mean_squared_error(yf, mean_pred)),
        "mae": float(skm.mean_absolute_error(yf, mean_pred)),
        "r2": float(skm.r2_score(yf, mean_pred)) if len(yf) > 1 else math.nan,
    }
    res = yf - pred
    q = np.quantile(res, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    residuals = {
        "mean": float(res.mean()),
        "std": float(res.std()),
        **{name: float(v) for name, v in zip(("min", "p5", "p25", "median", "p75", "p95", "max"), q)},
    }
    return EvaluationResult(
        task="regression",
        n_rows=len(y),
        metrics=m,
        baseline=base,
        confusion=[],
        residuals=residuals,
        y_true=yf,
        scores=pred,
    )


# -- evaluating an exported version through the served path ---------------------------------------


@dataclass(frozen=True)
class VersionEvaluation:
    result: EvaluationResult
    version_dir: Path
    model: str
    version: str
    importance: dict[str, Any] | None = None  # {"kind": ..., "features": [...], "values": [...]}
    saved_to: Path | None = None
    registry_updated: bool = False


def evaluate_version(
    version_dir: str | Path,
    data: Any,
    target: str,
    *,
    threshold: float = 0.5,
    threshold_target: str | None = None,
    chunk_rows: int = 65_536,
    importance_rows: int = 5000,
    estimator: Any = None,
    save: bool = True,
    seed: int = 0,
) -> VersionEvaluation:
    """Score ``data`` (CSV/Parquet path, datasource record or DataFrame) with the version through
    OnnxScorer — what the server computes — and evaluate against column ``target``.

    With ``save``, ``evaluation.json`` (metrics, baseline, threshold) is written next to the
    manifest, atomically, and the registry of the repository, if it indexes the version, records
    the metrics and threshold. ``importance_rows`` > 0 adds permutation importance on a sample
    (stratified for classifiers); an ``estimator`` with ``feature_importances_`` or ``coef_``
    gives its own importances instead.
    """
    from onyxserve.core.normalizer import FeatureValueError
    from onyxserve.training.batch.predict import BatchError, input_columns, load
    from onyxserve.training.batch.source import feature_value_error, open_source, prefetch, to_block
    from onyxserve.training.errors import DatasourceError, restated
    from onyxserve.training.evaluation.importance import Sampler, importances

    version_dir = Path(version_dir)
    try:
        scorer = load(version_dir)
    except BatchError as exc:
        raise EvaluationError(str(exc)) from None
    manifest = scorer.manifest
    if target in manifest.feature_names:
        raise EvaluationError(f"target {target!r} is one of the model's features")
    cols = input_columns(manifest, None, extra=[target])
    if manifest.task == "regression":
        cols["float_columns"].append(target)
    else:
        cols["string_columns"].append(target)
    sampler = Sampler(importance_rows, stratify=manifest.task != "regression", seed=seed)
    ys, outs, labels_out = [], [], []
    try:
        reader = open_source(data, chunk_rows=chunk_rows, **cols)
        for chunk in prefetch(reader.chunks()):
            y = chunk.column(target)
            missing = _missing_at(y)
            if missing is not None:
                raise EvaluationError(
                    f"{chunk.where + ', ' if chunk.where else ''}row {chunk.start + missing + 1},"
                    f" column {target!r}: the target value is missing"
                )
            try:
                scores = scorer.score([to_block(manifest, chunk)])
            except FeatureValueError as exc:
                raise restated(EvaluationError, feature_value_error(exc, chunk)) from None
            ys.append(y)
            if manifest.task == "regression":
                outs.append(scores["value"])
            else:
                outs.append(scores["probabilities"])
                labels_out.append(scores["label"])
            if importance_rows > 0:
                sampler.add(chunk, y)
    except DatasourceError as exc:  # SourceError (file, row, column, value), or a datasource's
        raise restated(EvaluationError, exc) from None
    if not ys:
        raise EvaluationError("no rows to evaluate")
    y_all = np.concatenate(ys)
    s_all = np.concatenate(outs)
    labels = list(manifest.labels) if manifest.labels else None
    if manifest.task == "binary":
        result = evaluate(
            y_all, s_all[:, 1], "binary", labels=labels, threshold=threshold, target=threshold_target
        )
    elif manifest.task == "multiclass":
        result = evaluate(y_all, s_all, "multiclass", labels=labels, predictions=np.concatenate(labels_out))
    else:
        result = evaluate(y_all, s_all, "regression")
    importance = None
    if estimator is not None:
        importance = native_importance(estimator)
    if importance is None and importance_rows > 0 and len(sampler):
        frame, y_sample = sampler.result()
        importance = importances(scorer, frame, y_sample, result, seed=seed)
    outcome = VersionEvaluation(result, version_dir, manifest.name, manifest.version, importance)
    if save:
        outcome = _save(outcome)
    return outcome


def _missing_at(y: np.ndarray) -> int | None:
    """Index of the first missing value of ``y``, or None."""
    if y.dtype.kind == "f":
        nan = np.flatnonzero(np.isnan(y))
        return int(nan[0]) if len(nan) else None
    if y.dtype.kind == "O":
        return next((i for i, v in enumerate(y) if v is None or (isinstance(v, float) and math.isnan(v))), None)
    return None


def native_importance(estimator: Any) -> dict[str, Any] | None:
    """``feature_importances_`` or |``coef_``| of the final estimator, on its input columns."""
    from onyxserve.training.evaluation.importance import native

    return native(estimator)


def _save(outcome: VersionEvaluation) -> VersionEvaluation:
    r = outcome.result
    payload = {
        "model": outcome.model,
        "version": outcome.version,
        **r.to_dict(),
        "importance": outcome.importance,
    }
    payload["metrics"] = _json_floats(payload["metrics"])
    payload["baseline"] = _json_floats(payload["baseline"])
    path = outcome.version_dir / EVALUATION_FILE
    tmp = path.with_name(f".{EVALUATION_FILE}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, default=_plain)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    updated = _record_in_registry(outcome, payload)
    return replace(outcome, saved_to=path, registry_updated=updated)


def _json_floats(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _record_in_registry(outcome: VersionEvaluation, payload: dict[str, Any]) -> bool:
    from onyxserve.repository.registry import Registry, RegistryError

    repository = version_repository(outcome.version_dir)
    if not registry_path(repository).is_file():
        return False
    try:
        Registry(repository).record_evaluation(
            outcome.model, outcome.version, payload["metrics"], payload.get("threshold")
        )
    except RegistryError:
        return False  # not indexed (yet): `registry sync` picks evaluation.json up later
    return True
