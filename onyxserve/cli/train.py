"""``onyxserve train`` and ``onyxserve tune``: fit (and optionally export) a model from a datasource.

    onyxserve train DATASOURCE.json --algorithm linear [--params '{"alpha": 1e-4}'] [--recipe recipe.json]
                    [--split '{"splitting": {...}}'] [--seed 0] [--class-weight balanced]
                    [--out model.joblib] [--export --name NAME [--repository DIR]] [--json]
    onyxserve tune DATASOURCE.json --algorithm gradient_boosting --space space.json [--strategy optuna]
                   [--trials 20] [--time-budget 60] [--metric roc_auc] [--history trials.json]
                   [--out best.joblib] [--export --name NAME [--repository DIR]] [--json]

``--params``, ``--split`` and ``--space`` take JSON text or ``@file.json``. Exit codes
(``onyxserve.cli.run``): 0 done, 1 refused (by export, or the datasource), 2 bad input (a
``TrainingError`` naming the key / file, or usage).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from onyxserve.cli._options import add_command, add_json, add_no_progress, add_repository, deprecated_alias
from onyxserve.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    t = add_command(
        subparsers,
        "train",
        "train a model on a datasource (recipe, split, algorithm, hyperparameters)",
        "Fit a recipe + estimator on the training side of a split, score the evaluation side, and"
        " optionally save the pipeline (joblib) and export it as a servable model version.",
    )
    _common(t)
    t.add_argument("--params", default="{}", help="hyperparameters as JSON text or @file.json")
    t.set_defaults(func=run_train)

    u = add_command(
        subparsers,
        "tune",
        "search hyperparameters over a declared space (random, optuna TPE, successive halving)",
        "Try configurations from a search space within a trial and a time budget, with early"
        " stopping; save the trial history; keep (and optionally export) the best pipeline.",
    )
    _common(u)
    u.add_argument("--space", required=True, help="search space as JSON text or @file / a .json path")
    u.add_argument("--strategy", default="optuna", choices=["random", "optuna", "halving"], help="search strategy")
    u.add_argument("--trials", type=int, default=20, help="trial budget")
    budget = u.add_argument(
        "--time-budget", type=float, default=None, metavar="SECONDS", help="time budget in seconds (default: none)"
    )
    deprecated_alias(u, "--timeout", budget)  # --timeout means waiting for a server everywhere else
    u.add_argument("--metric", help="metric to optimize (default: per task: roc_auc, f1_macro, rmse)")
    u.add_argument("--params", default="{}", help="fixed hyperparameters, JSON text or @file.json")
    u.add_argument("--history", type=Path, help="write the trial history here (.json or .csv)")
    u.set_defaults(func=run_tune)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("datasource", type=Path, help="datasource record (from `onyxserve datasource create`)")
    p.add_argument("--algorithm", required=True, help="linear | random_forest | gradient_boosting | mlp")
    p.add_argument("--recipe", type=Path, help="recipe JSON file (default: per attribute type)")
    p.add_argument("--split", help="training DataRearrangement, JSON text or @file (evaluation = complement)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--class-weight", choices=["balanced"], default=None, help="class weights")
    p.add_argument("--out", type=Path, help="save the fitted pipeline with joblib")
    p.add_argument(
        "--export", action="store_true", help="export the model as a version (needs --name; into --repository)"
    )
    p.add_argument("--name", help="model name for --export")
    add_repository(p)
    add_no_progress(p)
    add_json(p)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    from onyxserve.training.errors import TrainingError

    source = what
    if text.startswith("@") or (text.endswith(".json") and Path(text).exists()):
        path = Path(text.removeprefix("@"))
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TrainingError(f"cannot read: {exc.strerror or exc}", where=source) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainingError(
            f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", where=source
        ) from None


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    from onyxserve.training.datasource.record import load_datasource
    from onyxserve.training.recipe.spec import load_recipe

    if args.export and not args.name:
        raise UsageError("--export needs --name")
    return {
        "datasource": load_datasource(args.datasource),
        "recipe": load_recipe(args.recipe) if args.recipe else None,
        "split": _json_arg(args.split, "--split"),
        "params": _json_arg(args.params, "--params") or {},
    }


def _finish(args: argparse.Namespace, result: Any, out: dict[str, Any]) -> int:
    from onyxserve.training.errors import ExportError
    from onyxserve.training.fit.train import export_trained, save_pipeline

    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.out:
        out["saved"] = str(save_pipeline(result, args.out))
    if args.export:
        try:
            exported = export_trained(result, name=args.name, repository=args.repository)
        except ExportError:
            _print(args, out)  # the model was trained all the same: show what it scored
            raise
        for warning in exported.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        out["exported"] = {"name": args.name, "version": exported.version, "path": str(exported.path)}
    _print(args, out)
    return 0


def _print(args: argparse.Namespace, out: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    for key, value in out.items():
        if key in ("history",):
            continue
        print(f"{key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")


def run_train(args: argparse.Namespace) -> int:
    from onyxserve.training.fit.train import train_model

    inputs = _prepare(args)
    result = train_model(
        inputs["datasource"],
        algorithm=args.algorithm,
        params=inputs["params"],
        recipe=inputs["recipe"],
        split=inputs["split"],
        seed=args.seed,
        class_weight=args.class_weight,
        progress=False if args.no_progress else None,
    )
    return _finish(args, result, result.summary())


def run_tune(args: argparse.Namespace) -> int:
    from onyxserve.training.fit.tune import tune_model

    inputs = _prepare(args)
    tuned = tune_model(
        inputs["datasource"],
        args.algorithm,
        _json_arg(args.space, "--space"),
        strategy=args.strategy,
        trials=args.trials,
        timeout_s=args.time_budget,
        metric=args.metric,
        seed=args.seed,
        params=inputs["params"],
        recipe=inputs["recipe"],
        split=inputs["split"],
        class_weight=args.class_weight,
        history_path=args.history,
        progress=False if args.no_progress else None,
    )
    out = tuned.summary()
    if args.history:
        out["history_file"] = str(args.history)
    return _finish(args, tuned.best, out)
