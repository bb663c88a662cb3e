"""Training: a datasource + recipe + algorithm -> a fitted scikit-learn Pipeline, evaluated.

    result = train_model(ds, algorithm="linear", params={"max_passes": 20, "penalty": "l1", "alpha": 1e-5},
                         class_weight="balanced")
    result.metrics            # on the evaluation rows (the split's complement)
    export_trained(result, name="fraud", repository="models/")

The task comes from the schema's target (BINARY -> binary, CATEGORICAL -> binary/multiclass by
its distinct values, NUMERIC -> regression). The split names the training rows; the evaluation
rows are its complement. Default: 70 % stratified random (seeded by ``seed``) for
classification, the first 70 % (sequential) for regression. Rows without a target are dropped.

Fits are staged so progress can be shown and tuning can stop a trial early: linear = one
``partial_fit`` per pass, mlp = one ``partial_fit`` per epoch (stopping like ``fit`` after
``n_iter_no_change`` epochs without a ``tol`` improvement of the loss), random_forest and
gradient_boosting = warm-start growth in about ten steps (two for gradient boosting with
class weights: scikit-learn re-bins at each warm start, and weighted binning is slow). Class weights (``"balanced"`` or a
{label: weight} mapping) are applied as sample weights, which every algorithm accepts at every
stage, except linear: its SGD passes draw each row in proportion to its weight instead (same
objective, bounded steps; see ``_fit_passes``). Everything is seeded: the same inputs and seed
give identical predictions.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from onyxserve.training.datasource.record import Datasource, read_frames
from onyxserve.training.datasource.splits import Split, parse_split, select
from onyxserve.training.errors import TrainingError
from onyxserve.training.fit import metrics as train_metrics
from onyxserve.training.fit.params import CLASSIFICATION, TASKS, build_estimator, validate_params
from onyxserve.training.fit.sgd_adaptive import AdaptiveRate
from onyxserve.training.recipe.compile import build_transformer
from onyxserve.training.recipe.spec import Plan, Recipe, parse_recipe
from sklearn.pipeline import Pipeline
from sklearn.utils.class_weight import compute_sample_weight

StageCallback = Callable[[int, int, Any], None]  # (stage, stages, estimator so far); may raise to stop
SAMPLE_ROWS = 500  # rows of the evaluation side handed to export as its parity sample


@dataclass
class Prepared:
    """The data side of training, loaded once (tuning reuses it for every trial)."""

    datasource: Datasource
    task: str
    recipe: Recipe
    plan: Plan
    split: Split
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_eval: pd.DataFrame
    y_eval: np.ndarray
    transformer: Any  # the fitted ColumnTransformer
    Xt_train: np.ndarray
    Xt_eval: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # about the data: values read as missing

    @property
    def train_index(self) -> np.ndarray:
        return self.X_train.index.to_numpy()

    @property
    def eval_index(self) -> np.ndarray:
        return self.X_eval.index.to_numpy()


@dataclass
class TrainResult:
    pipeline: Pipeline
    algorithm: str
    params: dict[str, Any]  # every hyperparameter, validated (given + defaults)
    seed: int
    class_weight: Any
    prepared: Prepared
    metrics: dict[str, float]
    seconds: dict[str, float]  # load, recipe, fit, evaluate, total
    stages: int = 0  # passes / epochs / growth steps run
    warnings: list[str] = field(default_factory=list)  # a degenerate fit, with the knob to turn

    @property
    def task(self) -> str:
        return self.prepared.task

    def summary(self) -> dict[str, Any]:
        p = self.prepared
        return {
            "datasource": p.datasource.name,
            "task": self.task,
            "algorithm": self.algorithm,
            "params": self.params,
            "class_weight": self.class_weight,
            "seed": self.seed,
            "features": p.plan.inputs,
            "train_rows": len(p.X_train),
            "eval_rows": len(p.X_eval),
            "stages": self.stages,
            "metrics": self.metrics,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            **({"warnings": self.warnings} if self.warnings else {}),
        }

    def lineage(self) -> dict[str, Any]:
        p = self.prepared
        return {
            "datasource": {
                "name": p.datasource.name,
                "uri": p.datasource.location.uri,
                "checksum": p.datasource.checksum,
            },
            "schema": p.datasource.schema.to_dict(),
            "recipe": p.recipe.to_dict(),
            "recipe_plan": p.plan.to_dict(),
            "split": {"train": p.split.to_dict(), "evaluation": p.split.complementary().to_dict()},
            "training": {
                "algorithm": self.algorithm,
                "hyperparameters": self.params,
                "class_weight": self.class_weight,
                "seed": self.seed,
                "train_rows": len(p.X_train),
                "stages": self.stages,
                "seconds": self.seconds,
            },
        }


# ---- data --------------------------------------------------------------------------------


def resolve_task(datasource: Datasource, task: str | None) -> str:
    inferred = datasource.task
    if inferred is None:
        raise TrainingError(
            "the datasource has no target attribute; create it with a target",
            where=datasource.name,
            key="target",
        )
    if task is None:
        return inferred
    if task not in TASKS:
        raise TrainingError(f"task {task!r} is not one of {list(TASKS)}", where="arguments", key="task")
    if (task == "regression") != (inferred == "regression") or (
        task == "binary" and inferred == "multiclass"
    ):
        raise TrainingError(
            f"task {task!r} does not fit target {datasource.target!r} ({inferred})",
            where="arguments",
            key="task",
        )
    return task


def default_split(task: str, seed: int) -> Split:
    if task in CLASSIFICATION:
        return Split(0, 70, "random", str(seed), False, True)
    return Split(0, 70, "sequential")


def prepare(
    datasource: Datasource,
    *,
    task: str | None = None,
    recipe: Recipe | Mapping[str, Any] | str | None = None,
    split: Split | Mapping[str, Any] | str | None = None,
    seed: int = 0,
) -> Prepared:
    """Resolve task, recipe and split, read the rows, and fit the recipe on the training side."""
    t0 = time.perf_counter()
    task = resolve_task(datasource, task)
    recipe = parse_recipe(recipe)
    plan = recipe.plan(datasource)
    split = (
        default_split(task, seed)
        if split is None
        else split
        if isinstance(split, Split)
        else parse_split(split, "split")
    )
    target = datasource.target
    frame = pd.concat(list(read_frames(datasource, columns=[*plan.inputs, target])))
    notes = violation_notes(datasource, [*plan.inputs, target])
    for note in notes:
        warnings.warn(note, TrainingWarning, stacklevel=2)
    features = _missing_as_nan(frame[plan.inputs])
    labels = frame[target]
    inside = select(split, len(frame), labels)
    known = labels.notna().to_numpy()
    train, held = inside & known, ~inside & known
    if not train.any() or not held.any():
        raise TrainingError(
            f"the split leaves {int(train.sum())} training and {int(held.sum())} evaluation rows; both need rows",
            where="split",
            key="splitting",
        )
    y = _target_values(labels, task)
    loaded = time.perf_counter()
    transformer = build_transformer(plan, seed=seed)
    X_train, X_eval = features[train], features[held]
    y_train, y_eval = y[train], y[held]
    if task in CLASSIFICATION and len(np.unique(y_train)) < 2:
        raise TrainingError(
            "the training rows hold a single class; widen the split", where="split", key="splitting"
        )
    Xt_train = transformer.fit_transform(X_train, y_train)
    Xt_eval = transformer.transform(X_eval)
    done = time.perf_counter()
    return Prepared(
        datasource,
        task,
        recipe,
        plan,
        split,
        X_train,
        y_train,
        X_eval,
        y_eval,
        transformer,
        np.ascontiguousarray(Xt_train, dtype=np.float64),
        np.ascontiguousarray(Xt_eval, dtype=np.float64),
        {"load": loaded - t0, "recipe": done - loaded},
        notes,
    )


def violation_notes(datasource: Datasource, columns: list[str]) -> list[str]:
    """One note per used column holding schema violations: the datasource recorded them when
    it was created, and reading it back turns them into missing values, which would otherwise
    go unseen (imputed for a feature, the row left out for the target)."""
    notes = []
    for column in columns:
        n = datasource.statistics.get(column, {}).get("invalid", 0)  # missing targets not counted
        if not n:
            continue
        listed = (
            r for r in datasource.violations.get("rows", [])
            if r["column"] == column and r["reason"] != "missing target value"
        )
        first = next(listed, None)
        where = f" (first: row {first['row']}, {first['reason']})" if first else ""
        what = "those rows are left out" if column == datasource.target else "trained on as missing"
        notes.append(
            f"{datasource.location.uri}, column {column!r}: {n:,} value{'s' if n > 1 else ''} of"
            f" datasource {datasource.name!r} {'are schema violations' if n > 1 else 'is a schema violation'}"
            f"{where}; {what}"
        )
    return notes


def _missing_as_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical/text columns hold None for missing; NaN is what imputers and export expect."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].where(out[column].notna(), np.nan)
    return out


def _target_values(labels: pd.Series, task: str) -> np.ndarray:
    if task == "regression":
        return labels.to_numpy(dtype=np.float64)
    values = labels.to_numpy()
    if labels.dtype != object:  # BINARY targets arrive as 0.0 / 1.0
        known = labels.dropna()
        if len(known) and np.all(known == np.round(known)):
            return np.where(labels.notna(), labels.fillna(0), 0).astype(np.int64)
    return np.array([None if v is None else str(v) for v in values], dtype=object)


# ---- fitting -----------------------------------------------------------------------------


def sample_weights(y: np.ndarray, class_weight: Any) -> np.ndarray | None:
    if class_weight is None:
        return None
    if class_weight != "balanced" and not isinstance(class_weight, Mapping):
        raise TrainingError(
            f"{class_weight!r}: expected null, 'balanced' or {{label: weight}}",
            where="arguments",
            key="class_weight",
        )
    if isinstance(class_weight, Mapping):
        present = set(np.unique(y).tolist())
        class_weight = {(_as_label(k, present)): float(v) for k, v in class_weight.items()}
    return compute_sample_weight(class_weight, y)


def _as_label(key: Any, present: set) -> Any:
    if key in present:
        return key
    for label in present:
        if str(label) == str(key):
            return label
    raise TrainingError(
        f"class {key!r} is not a label of the target ({sorted(map(str, present))})",
        where="arguments",
        key="class_weight",
    )


def fit_estimator(
    estimator: Any,
    algorithm: str,
    params: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
    progress: bool | None = None,
    on_stage: StageCallback | None = None,
    desc: str = "",
) -> int:
    """Fit ``estimator`` in stages (see the module docstring); returns the number of stages run."""
    bar = _bar(progress, algorithm, desc)
    try:
        if algorithm == "linear":
            return _fit_passes(
                estimator, X, y, sample_weight, params["max_passes"], params["shuffle"], seed, bar, on_stage
            )
        if algorithm == "mlp":
            return _fit_epochs(estimator, X, y, sample_weight, params, bar, on_stage)
        size = "n_estimators" if algorithm == "random_forest" else "max_iter"
        # HistGradientBoosting re-bins at every warm start, and with sample weights its binning
        # (weighted percentiles, one call per threshold) costs seconds: grow in 2 steps then
        steps = 2 if algorithm == "gradient_boosting" and sample_weight is not None else 10
        return _fit_growing(estimator, size, params[size], X, y, sample_weight, bar, on_stage, steps)
    finally:
        bar.close()


def _fit_passes(est, X, y, w, passes, shuffle, seed, bar, on_stage) -> int:
    rng = np.random.default_rng(seed)
    classes = np.unique(y) if _is_classifier(est) else None
    adaptive = AdaptiveRate(est) if est.learning_rate == "adaptive" else None
    bar.reset(total=passes)
    for i in range(passes):
        extra = {"classes": classes} if classes is not None else {}
        if w is not None and np.ptp(w) > 0:
            # Unequal weights are drawn, not multiplied in: SGD's step is eta * weight * gradient,
            # and scikit-learn's schedules ignore the weight, so "balanced" at 0.3 % positives
            # (weight ~170) makes every fraud row a ~170x step the iterate never settles from
            # (weighted objective 17 vs the optimum's 0.12 at alpha 1e-4; 36-43 % predicted
            # fraud with a constant rate at alpha >= 0.03). Rows drawn in proportion to their
            # weight, at unit weight, have the same expected objective with bounded steps.
            order = _weighted_rows(w, rng, shuffle)
            est.partial_fit(X[order], y[order], **extra)
        else:
            order = rng.permutation(len(y)) if shuffle else slice(None)
            est.partial_fit(X[order], y[order], sample_weight=None if w is None else w[order], **extra)
        bar.update(1)
        if on_stage:
            on_stage(i + 1, passes, est)
        if adaptive is not None and not adaptive.after_pass(X, y):
            return i + 1  # the rate fell below 1e-6, as scikit-learn's fit stops
    return passes


def _weighted_rows(w: np.ndarray, rng: np.random.Generator, shuffle: bool) -> np.ndarray:
    """One pass of len(w) row positions, each row appearing in proportion to its weight
    (systematic resampling: the exact proportions, low variance). ``shuffle`` false keeps the
    data's order and a fixed offset, so the pass is the same every time."""
    n = len(w)
    cumulative = np.cumsum(w, dtype=np.float64)
    offset = rng.uniform() if shuffle else 0.5
    rows = np.searchsorted(cumulative, (np.arange(n) + offset) * (cumulative[-1] / n), side="right")
    rows = np.minimum(rows, n - 1)
    return rng.permutation(rows) if shuffle else rows


def _fit_epochs(est, X, y, w, params, bar, on_stage) -> int:
    epochs, patience, tol = params["max_iter"], params["n_iter_no_change"], params["tol"]
    classes = np.unique(y) if _is_classifier(est) else None
    checkpoints = set(np.linspace(1, epochs, min(epochs, 10)).round().astype(int).tolist())
    best, stale = math.inf, 0
    bar.reset(total=epochs)
    epoch = 0
    for epoch in range(1, epochs + 1):
        extra = {"classes": classes} if classes is not None else {}
        est.partial_fit(X, y, sample_weight=w, **extra)
        bar.update(1)
        loss = float(est.loss_)
        stale = 0 if loss < best - tol else stale + 1
        best = min(best, loss)
        stop = stale >= patience
        if on_stage and (epoch in checkpoints or stop):
            on_stage(epoch, epochs, est)
        if stop:
            break
    return epoch


def _fit_growing(est, size_param, total, X, y, w, bar, on_stage, steps: int) -> int:
    step = max(1, math.ceil(total / steps))
    sizes = list(range(step, total, step)) + [total]
    bar.reset(total=total)
    est.set_params(warm_start=True)
    done = 0
    for i, size in enumerate(sizes):
        est.set_params(**{size_param: size})
        est.fit(X, y, sample_weight=w)
        bar.update(size - done)
        done = size
        if on_stage:
            on_stage(i + 1, len(sizes), est)
        if size_param == "max_iter" and est.n_iter_ < size:  # boosting stopped early by itself
            break
    est.set_params(warm_start=False)
    return len(sizes[: i + 1])


def _is_classifier(est: Any) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(est)


class _NoBar:
    def reset(self, total: int) -> None: ...
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


def _bar(progress: bool | None, algorithm: str, desc: str) -> Any:
    if progress is False:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is in the training extra; without it, no bar
        return _NoBar()
    unit = {"linear": "pass", "mlp": "epoch", "random_forest": "tree", "gradient_boosting": "iter"}[algorithm]
    # progress=None: shown on a terminal only (tqdm's disable=None)
    return tqdm(
        total=0,
        desc=desc or algorithm,
        unit=unit,
        file=sys.stderr,
        disable=None if progress is None else False,
        leave=False,
    )


def train_prepared(
    prepared: Prepared,
    algorithm: str,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    class_weight: Any = None,
    progress: bool | None = None,
    on_stage: StageCallback | None = None,
    rows: np.ndarray | None = None,
) -> TrainResult:
    """Fit one estimator on prepared data (``rows``: positions of training rows to use)."""
    full = validate_params(algorithm, prepared.task, params)
    estimator = build_estimator(algorithm, prepared.task, full, seed)
    if class_weight is not None and prepared.task == "regression":
        raise TrainingError(
            "class weights apply to classification only", where="arguments", key="class_weight"
        )
    X, y = prepared.Xt_train, prepared.y_train
    if rows is not None:
        X, y = X[rows], y[rows]
    weights = sample_weights(y, class_weight)
    t0 = time.perf_counter()
    stages = fit_estimator(
        estimator,
        algorithm,
        full,
        X,
        y,
        sample_weight=weights,
        seed=seed,
        progress=progress,
        on_stage=on_stage,
    )
    fitted = time.perf_counter()
    metrics = train_metrics.report(prepared.task, estimator, prepared.Xt_eval, prepared.y_eval)
    notes = degenerate_fit(algorithm, prepared.task, estimator, full, prepared.Xt_eval, prepared.y_eval)
    for note in notes:
        warnings.warn(note, TrainingWarning, stacklevel=2)
    done = time.perf_counter()
    pipeline = Pipeline([("recipe", prepared.transformer), ("model", estimator)])
    seconds = {**prepared.seconds, "fit": fitted - t0, "evaluate": done - fitted}
    seconds["total"] = sum(seconds.values())
    return TrainResult(
        pipeline, algorithm, full, seed, class_weight, prepared, metrics, seconds, stages, [*prepared.notes, *notes]
    )


class TrainingWarning(UserWarning):
    """A fit that ran but is useless as it stands; the message names the hyperparameter."""


def degenerate_fit(
    algorithm: str, task: str, estimator: Any, params: Mapping[str, Any], X_eval: np.ndarray, y_eval: np.ndarray
) -> list[str]:
    """A warning for a linear classifier regularized down to its intercept: every row gets the
    same score, so it ranks nothing (AUC 0.5). Predicting one class at 0.5 while still ranking
    is not flagged: that is what an unweighted model of rare fraud does, and the threshold is
    chosen at evaluation."""
    if algorithm != "linear" or task not in CLASSIFICATION or len(y_eval) == 0 or np.any(estimator.coef_):
        return []
    label = estimator.predict(X_eval[:1])[0]
    note = (
        f"the model gives every row the same score (so predicts class {label!r} for all):"
        f" penalty {params['penalty']!r} at alpha {params['alpha']:g} set every coefficient to 0"
        " (with class_weight 'balanced' that score is about 0.5, and the class is decided by noise"
        " in the intercept); lower 'alpha'"
    )
    return [note]


def train_model(
    datasource: Datasource,
    *,
    task: str | None = None,
    algorithm: str = "linear",
    params: Mapping[str, Any] | None = None,
    recipe: Recipe | Mapping[str, Any] | str | None = None,
    split: Split | Mapping[str, Any] | str | None = None,
    seed: int = 0,
    class_weight: Any = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``algorithm`` on ``datasource``; hyperparameters and recipe are checked before any
    data is read, and every error is a TrainingError (or DatasourceError) naming the key."""
    validate_params(algorithm, resolve_task(datasource, task), params)  # fail before reading data
    prepared = prepare(datasource, task=task, recipe=recipe, split=split, seed=seed)
    return train_prepared(
        prepared, algorithm, params, seed=seed, class_weight=class_weight, progress=progress
    )


# ---- after training ----------------------------------------------------------------------


def save_pipeline(result: TrainResult, path: str | Path) -> Path:
    """The fitted pipeline with joblib (loadable by ``onyxserve export``), written atomically."""
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump(result.pipeline, tmp)
    tmp.replace(path)
    return path


def export_trained(
    result: TrainResult, *, name: str, repository: str | Path, sample_rows: int = SAMPLE_ROWS
) -> Any:
    """Export the trained pipeline as the next version of ``name``: the parity sample is the first
    ``sample_rows`` evaluation rows; the drift baseline is the whole training frame (one chunked
    pass, bounded memory); lineage carries datasource, schema, recipe, split and
    hyperparameters; metrics are the evaluation metrics. A recipe the core cannot serve is
    refused (ExportError) before anything is written."""
    from onyxserve.training.export.writer import ExportError, export_model

    problems = result.prepared.plan.serving_problems()
    if problems:
        raise ExportError("; ".join(problems))
    sample = result.prepared.X_eval.head(sample_rows)
    return export_model(
        result.pipeline,
        name=name,
        repository=repository,
        sample=sample,
        baseline_data=result.prepared.X_train,
        lineage=result.lineage(),
        metrics={"evaluation": result.metrics, "evaluation_rows": len(result.prepared.X_eval)},
    )
