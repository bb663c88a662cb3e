"""Tuning: search an algorithm's hyperparameters over a declared space, within budgets.

    result = tune_model(ds, "gradient_boosting", {
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true},
        "max_leaf_nodes": {"type": "int", "low": 4, "high": 64},
        "l2_regularization": {"type": "float", "low": 0.0, "high": 1.0}},
        strategy="optuna", trials=30, timeout_s=120, metric="roc_auc", history_path="trials.json")
    result.best.pipeline, result.best_params, result.best_score

The space: one entry per hyperparameter of the algorithm (``train_params``), each
``{"type": "float"|"int", "low": a, "high": b, "log": false, "step": null}`` or
``{"type": "categorical", "choices": [...]}`` (choices are JSON scalars; ``hidden_layer_sizes``
takes strings like ``"64-32"``). Bounds and choices must be values the hyperparameter allows;
errors name ``space.<name>.<field>``. ``params`` fixes the hyperparameters not searched.

Strategies:
- ``random``: independent samples (optuna's RandomSampler), no early stopping of a trial
  other than the time budget.
- ``optuna``: TPE (Bayesian) sampling with median pruning: each trial reports the metric on
  the evaluation rows after each stage of its fit (passes / epochs / growth steps) and is stopped
  when it is below the median of earlier trials at that stage.
- ``halving``: successive halving: ``trials`` random configurations fitted on a stratified
  1/factor^k share of the training rows, the best 1/factor kept, on ever more rows, until the
  survivors see all rows. (Our loop rather than HalvingRandomSearchCV: the latter has neither a
  time budget nor a holdout split, and cannot report progress.) Every fit is one history entry.

Budgets: at most ``trials`` trials (configurations for halving) and ``timeout_s`` seconds; the
time budget is also checked inside a trial at each stage, so a long fit cannot overrun it by
more than one stage. The score is ``metric`` on the evaluation rows (the split's complement);
the best trial's fitted pipeline is kept (no refit). The history (params, score, duration,
state, per-stage values) is saved as JSON or CSV by the file's extension.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onyxserve.training.errors import TrainingError
from onyxserve.training.fit import metrics as train_metrics
from onyxserve.training.fit.params import CLASSIFICATION, check_value, param_table, validate_params
from onyxserve.training.fit.train import Prepared, TrainResult, prepare, train_prepared

STRATEGIES = ("random", "optuna", "halving")
_DIM_KEYS = {"type", "low", "high", "log", "step", "choices"}


@dataclass
class TuneResult:
    best: TrainResult
    best_params: dict[str, Any]  # the searched ones of the best trial
    best_score: float
    metric: str
    strategy: str
    history: list[dict[str, Any]]
    stopped_by: str  # "trials" | "time budget"
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for h in self.history:
            states[h["state"]] = states.get(h["state"], 0) + 1
        return {
            "algorithm": self.best.algorithm,
            "strategy": self.strategy,
            "metric": self.metric,
            "best_score": self.best_score,
            "best_params": self.best_params,
            "trials": len(self.history),  # fits; for halving one configuration runs at several rungs
            "configurations": len({h["number"] for h in self.history}),
            "states": states,
            "stopped_by": self.stopped_by,
            "seconds": round(self.seconds, 3),
            "best_metrics": self.best.metrics,
        }


# ---- the space ---------------------------------------------------------------------------


def parse_space(space: Mapping[str, Any] | str, algorithm: str, task: str) -> dict[str, dict[str, Any]]:
    """The checked space; errors name ``space.<hyperparameter>.<field>``."""
    if isinstance(space, str):
        try:
            space = json.loads(space)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"not valid JSON: {exc.msg} at column {exc.colno}", where="space") from None
    if not isinstance(space, Mapping) or not space:
        raise TrainingError("a search space is a non-empty JSON object {name: dimension}", where="space")
    table = param_table(algorithm, task)
    out = {}
    for name, dim in space.items():
        key = f"space.{name}"
        if name not in table:
            raise TrainingError(
                f"not a hyperparameter of {algorithm}; expected some of {sorted(table)}", key=key
            )
        if not isinstance(dim, Mapping) or set(dim) - _DIM_KEYS:
            raise TrainingError(f"a dimension is an object with some of {sorted(_DIM_KEYS)}", key=key)
        spec, kind = table[name], dim.get("type")
        if kind == "categorical":
            choices = dim.get("choices")
            if not isinstance(choices, list) or not choices or set(dim) - {"type", "choices"}:
                raise TrainingError(
                    "needs a non-empty list 'choices' (and nothing else)", key=f"{key}.choices"
                )
            for choice in choices:
                if choice is not None and not isinstance(choice, (bool, int, float, str)):
                    raise TrainingError(f"{choice!r}: choices are JSON scalars", key=f"{key}.choices")
                check_value(f"{key}.choices", spec, choice, where="space")
            out[name] = {"type": "categorical", "choices": list(choices)}
            continue
        if kind not in ("int", "float"):
            raise TrainingError(
                f"type {kind!r} is not one of ['float', 'int', 'categorical']", key=f"{key}.type"
            )
        if spec.kind not in ("int", "float") or (spec.kind == "int" and kind == "float"):
            raise TrainingError(
                f"{name} is {spec.describe()}; use type {spec.kind if spec.kind in ('int', 'float') else 'categorical'}",
                key=f"{key}.type",
            )
        for bound in ("low", "high"):
            if bound not in dim:
                raise TrainingError("needs low and high", key=f"{key}.{bound}")
            check_value(f"{key}.{bound}", spec, dim[bound], where="space")
        low, high, log = dim["low"], dim["high"], dim.get("log", False)
        if low > high:
            raise TrainingError(f"low {low} is above high {high}", key=f"{key}.low")
        if not isinstance(log, bool) or (log and low <= 0):
            raise TrainingError("log must be true or false, and a log scale needs low > 0", key=f"{key}.log")
        step = dim.get("step")
        if step is not None and (
            isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or log
        ):
            raise TrainingError("step must be a positive number, and not with log", key=f"{key}.step")
        out[name] = {"type": kind, "low": low, "high": high, "log": log, "step": step}
    return out


def _suggest(trial: Any, name: str, dim: Mapping[str, Any]) -> Any:
    if dim["type"] == "categorical":
        return trial.suggest_categorical(name, dim["choices"])
    if dim["type"] == "int":
        return trial.suggest_int(
            name, int(dim["low"]), int(dim["high"]), step=int(dim["step"] or 1), log=dim["log"]
        )
    return trial.suggest_float(name, float(dim["low"]), float(dim["high"]), step=dim["step"], log=dim["log"])


# ---- the search --------------------------------------------------------------------------


class _Stop(Exception):
    """Raised inside a fit when the time budget is spent."""


def tune_model(
    datasource: Any,
    algorithm: str,
    space: Mapping[str, Any] | str,
    *,
    strategy: str = "optuna",
    trials: int = 20,
    timeout_s: float | None = None,
    metric: str | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    recipe: Any = None,
    split: Any = None,
    task: str | None = None,
    class_weight: Any = None,
    history_path: str | Path | None = None,
    progress: bool | None = None,
    halving_factor: int = 3,
    prepared: Prepared | None = None,
) -> TuneResult:
    """Search ``space`` for ``algorithm`` on ``datasource`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise TrainingError(
            f"strategy {strategy!r} is not one of {list(STRATEGIES)}", where="arguments", key="strategy"
        )
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise TrainingError(f"must be a whole number >= 1, not {trials!r}", where="arguments", key="trials")
    if timeout_s is not None and not timeout_s > 0:
        raise TrainingError(
            f"must be a positive number of seconds, not {timeout_s!r}", where="arguments", key="timeout"
        )
    if not isinstance(halving_factor, int) or halving_factor < 2:
        raise TrainingError("must be a whole number >= 2", where="arguments", key="halving_factor")
    from onyxserve.training.fit.train import resolve_task

    resolved = prepared.task if prepared is not None else resolve_task(datasource, task)
    dims = parse_space(space, algorithm, resolved)
    fixed = dict(params or {})
    overlap = sorted(set(fixed) & set(dims))
    if overlap:
        raise TrainingError(
            "is both fixed in params and searched in the space", where="params", key=overlap[0]
        )
    validate_params(algorithm, resolved, fixed)
    metric = train_metrics.check_metric(metric, resolved)
    start = time.monotonic()
    prep = prepared or prepare(datasource, task=task, recipe=recipe, split=split, seed=seed)
    deadline = None if timeout_s is None else start + timeout_s
    search = _Search(prep, algorithm, dims, fixed, metric, seed, class_weight, deadline, progress)
    if strategy == "halving":
        stopped = search.halving(trials, halving_factor)
    else:
        stopped = search.optuna(trials, timeout_s, pruning=strategy == "optuna")
    if search.best is None:
        raise TrainingError(
            f"no trial completed within the budget ({len(search.history)} started);"
            " raise the time budget (--time-budget) or --trials",
            where="tune",
            key="timeout" if stopped == "time budget" else "trials",
        )
    result = TuneResult(
        best=search.best,
        best_params=search.best_params,
        best_score=search.best_score,
        metric=metric,
        strategy=strategy,
        history=search.history,
        stopped_by=stopped,
        seconds=time.monotonic() - start,
    )
    if history_path is not None:
        save_history(result, history_path)
    return result


class _Search:
    def __init__(self, prep, algorithm, dims, fixed, metric, seed, class_weight, deadline, progress) -> None:
        self.prep, self.algorithm, self.dims, self.fixed = prep, algorithm, dims, fixed
        self.metric, self.seed, self.class_weight, self.deadline = metric, seed, class_weight, deadline
        self.progress = progress
        self.greater = train_metrics.METRICS[metric].greater
        self.history: list[dict[str, Any]] = []
        self.best: TrainResult | None = None
        self.best_params: dict[str, Any] = {}
        self.best_score = math.nan

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _better(self, score: float) -> bool:
        if math.isnan(score):
            return False
        return math.isnan(self.best_score) or (
            score > self.best_score if self.greater else score < self.best_score
        )

    def _fit(self, config: dict[str, Any], on_stage=None, rows=None) -> tuple[TrainResult, float]:
        result = train_prepared(
            self.prep,
            self.algorithm,
            {**self.fixed, **config},
            seed=self.seed,
            class_weight=self.class_weight,
            progress=False,
            on_stage=on_stage,
            rows=rows,
        )
        score = train_metrics.compute(
            self.metric, self.prep.task, result.pipeline[-1], self.prep.Xt_eval, self.prep.y_eval
        )
        return result, score

    def _score_at(self, estimator: Any) -> float:
        return train_metrics.compute(
            self.metric, self.prep.task, estimator, self.prep.Xt_eval, self.prep.y_eval
        )

    def _bar(self, total: int, desc: str):
        if self.progress is False:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(
            total=total,
            desc=desc,
            unit="trial",
            file=sys.stderr,
            disable=None if self.progress is None else False,
        )

    # -- random / TPE through optuna --------------------------------------------------------

    def optuna(self, trials: int, timeout_s: float | None, pruning: bool) -> str:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler = (
            optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=min(5, trials))
            if pruning
            else optuna.samplers.RandomSampler(seed=self.seed)
        )
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
            if pruning
            else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(
            direction="maximize" if self.greater else "minimize", sampler=sampler, pruner=pruner
        )
        bar = self._bar(trials, f"tune {self.algorithm} ({'tpe' if pruning else 'random'})")

        def objective(trial: Any) -> float:
            config = {name: _suggest(trial, name, dim) for name, dim in self.dims.items()}
            entry: dict[str, Any] = {"number": trial.number, "params": config, "intermediate": {}}
            self.history.append(entry)
            started = time.monotonic()

            def on_stage(step: int, total: int, estimator: Any) -> None:
                if self._late():
                    raise _Stop
                if pruning:
                    value = self._score_at(estimator)
                    entry["intermediate"][step] = value
                    if not math.isnan(value):
                        trial.report(value, step)
                        if trial.should_prune():
                            raise optuna.TrialPruned

            try:
                result, score = self._fit(config, on_stage)
            except optuna.TrialPruned:
                entry.update(state="PRUNED", score=None, note="below the median of earlier trials")
                raise
            except _Stop:
                entry.update(state="PRUNED", score=None, note="time budget spent during the fit")
                study.stop()
                raise optuna.TrialPruned from None
            except (ValueError, ArithmeticError) as exc:  # a configuration the estimator rejects
                entry.update(state="FAIL", score=None, note=f"{type(exc).__name__}: {exc}")
                return math.nan
            finally:
                entry["duration_s"] = round(time.monotonic() - started, 4)
            entry.update(
                state="COMPLETE" if not math.isnan(score) else "FAIL",
                score=None if math.isnan(score) else score,
            )
            if self._better(score):
                self.best, self.best_params, self.best_score = result, config, score
            return score

        def tick(study: Any, trial: Any) -> None:
            if bar is not None:
                bar.update(1)
                if not math.isnan(self.best_score):
                    bar.set_postfix({self.metric: f"{self.best_score:.4g}"})
            if self._late():
                study.stop()

        try:
            study.optimize(objective, n_trials=trials, timeout=timeout_s, callbacks=[tick], catch=())
        finally:
            if bar is not None:
                bar.close()
        return (
            "trials"
            if len(self.history) >= trials
            and not any(h.get("note", "").startswith("time") for h in self.history)
            else "time budget"
        )

    # -- successive halving -----------------------------------------------------------------

    def halving(self, n_configs: int, factor: int) -> str:
        import optuna

        rng = np.random.default_rng(self.seed)
        sampler = optuna.samplers.RandomSampler(seed=self.seed)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study(sampler=sampler)
        configs = []
        for _ in range(n_configs):
            trial = study.ask()
            configs.append({name: _suggest(trial, name, dim) for name, dim in self.dims.items()})
        n_train = len(self.prep.y_train)
        rungs = max(1, math.floor(math.log(n_configs, factor)) + 1) if n_configs > 1 else 1
        order = self._stratified_order(rng)
        alive = list(range(n_configs))
        fits = sum(math.ceil(n_configs / factor**r) for r in range(rungs))
        bar = self._bar(fits, f"tune {self.algorithm} (halving)")
        stopped = "trials"
        try:
            for rung in range(rungs):
                share = factor ** (rung - rungs + 1)
                rows = (
                    np.sort(order[: max(self._min_rows(), math.ceil(n_train * share))]) if share < 1 else None
                )
                scores = {}
                for i in alive:
                    if self._late():
                        stopped = "time budget"
                        break
                    entry = {
                        "number": i,
                        "rung": rung,
                        "rows": n_train if rows is None else len(rows),
                        "params": configs[i],
                    }
                    self.history.append(entry)
                    started = time.monotonic()

                    def on_stage(step: int, total: int, estimator: Any) -> None:
                        if self._late():
                            raise _Stop

                    try:
                        result, score = self._fit(configs[i], on_stage, rows)
                    except _Stop:
                        entry.update(state="PRUNED", score=None, note="time budget spent during the fit")
                        stopped = "time budget"
                        break
                    except (ValueError, ArithmeticError) as exc:
                        entry.update(state="FAIL", score=None, note=f"{type(exc).__name__}: {exc}")
                        continue
                    finally:
                        entry["duration_s"] = round(time.monotonic() - started, 4)
                        if bar is not None:
                            bar.update(1)
                    entry.update(
                        state="COMPLETE" if not math.isnan(score) else "FAIL",
                        score=None if math.isnan(score) else score,
                    )
                    scores[i] = score
                    # the best is taken from the highest rung reached (more rows beat a lucky small fit)
                    if rung == self._best_rung and self._better(score) or rung > self._best_rung:
                        self.best, self.best_params, self.best_score, self._best_rung = (
                            result,
                            configs[i],
                            score,
                            rung,
                        )
                if stopped != "trials":
                    break
                ranked = sorted(
                    (i for i in scores if not math.isnan(scores[i])),
                    key=lambda i: scores[i],
                    reverse=self.greater,
                )
                keep = ranked[: max(1, math.ceil(len(alive) / factor))]
                for h in self.history:
                    if h.get("rung") == rung and h["number"] not in keep and h["state"] == "COMPLETE":
                        h["note"] = "eliminated"
                alive = keep
                if bar is not None and not math.isnan(self.best_score):
                    bar.set_postfix({self.metric: f"{self.best_score:.4g}"})
        finally:
            if bar is not None:
                bar.close()
        return stopped

    _best_rung = -1

    def _min_rows(self) -> int:
        return 2 * max(1, len(np.unique(self.prep.y_train))) if self.prep.task in CLASSIFICATION else 10

    def _stratified_order(self, rng: np.random.Generator) -> np.ndarray:
        """Training positions ordered so that every prefix keeps the class balance (classification)."""
        n = len(self.prep.y_train)
        if self.prep.task not in CLASSIFICATION:
            return rng.permutation(n)
        y = self.prep.y_train
        keys = np.empty(n)
        for label in np.unique(y):
            idx = np.flatnonzero(y == label)
            # the k-th row of a class gets key (k + u) / count: classes interleave in proportion
            keys[idx[rng.permutation(len(idx))]] = (np.arange(len(idx)) + rng.random(len(idx)) * 0.5) / len(
                idx
            )
        return np.argsort(keys, kind="stable")


# ---- history -----------------------------------------------------------------------------


def save_history(result: TuneResult, path: str | Path) -> Path:
    """The trial history as JSON (with the search settings and the best trial) or CSV (one row
    per trial, one ``param_<name>`` column per hyperparameter), by the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".csv":
        names = sorted({k for h in result.history for k in h["params"]})
        columns = [
            "number",
            "rung",
            "rows",
            "state",
            "score",
            "duration_s",
            *(f"param_{n}" for n in names),
            "note",
        ]
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for h in result.history:
                row = {
                    **h,
                    **{
                        f"param_{n}": json.dumps(v) if isinstance(v, list) else v
                        for n, v in h["params"].items()
                    },
                }
                writer.writerow(row)
    else:
        doc = {"summary": result.summary(), "history": result.history}
        tmp.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
