"""The handful of metrics training reports and tuning optimizes (the full evaluation is elsewhere).

Each is scikit-learn's own function; ``greater`` says which way is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from onyxserve.training.errors import TrainingError
from sklearn import metrics as skm


@dataclass(frozen=True)
class Metric:
    tasks: tuple[str, ...]
    greater: bool
    uses: str  # "score" (positive-class probability), "proba", "label" or "value"
    fn: Callable[[Any, Any], float]


METRICS = {
    "roc_auc": Metric(("binary",), True, "score", skm.roc_auc_score),
    "average_precision": Metric(("binary",), True, "score", skm.average_precision_score),
    "log_loss": Metric(("binary", "multiclass"), False, "proba", skm.log_loss),
    "accuracy": Metric(("binary", "multiclass"), True, "label", skm.accuracy_score),
    "f1": Metric(("binary",), True, "label", lambda y, p: skm.f1_score(y, p, zero_division=0)),
    "f1_macro": Metric(
        ("binary", "multiclass"),
        True,
        "label",
        lambda y, p: skm.f1_score(y, p, average="macro", zero_division=0),
    ),
    "rmse": Metric(("regression",), False, "value", skm.root_mean_squared_error),
    "mae": Metric(("regression",), False, "value", skm.mean_absolute_error),
    "r2": Metric(("regression",), True, "value", skm.r2_score),
}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}
REPORTED = {
    "binary": ("roc_auc", "average_precision", "accuracy", "f1"),
    "multiclass": ("accuracy", "f1_macro"),
    "regression": ("rmse", "mae", "r2"),
}


def check_metric(name: str | None, task: str) -> str:
    name = name or DEFAULT_METRIC[task]
    metric = METRICS.get(name)
    if metric is None or task not in metric.tasks:
        allowed = [n for n, m in METRICS.items() if task in m.tasks]
        raise TrainingError(
            f"metric {name!r} does not apply to {task}; expected one of {allowed}",
            where="arguments",
            key="metric",
        )
    return name


def compute(name: str, task: str, estimator: Any, X: Any, y: Any) -> float:
    """``name`` for ``estimator`` (fitted, even partly) on ``X``; NaN when undefined (one class)."""
    metric = METRICS[name]
    if metric.uses == "value":
        return float(metric.fn(y, estimator.predict(X)))
    if metric.uses == "label":
        return float(metric.fn(y, estimator.predict(X)))
    proba = estimator.predict_proba(X)
    if metric.uses == "score":
        if len(np.unique(y)) < 2:
            return float("nan")
        positive = list(estimator.classes_).index(estimator.classes_[-1])
        return float(metric.fn(np.asarray(y) == estimator.classes_[-1], proba[:, positive]))
    return float(metric.fn(y, proba, labels=estimator.classes_))


def report(task: str, estimator: Any, X: Any, y: Any) -> dict[str, float]:
    return {name: compute(name, task, estimator, X, y) for name in REPORTED[task]}
