"""Algorithms and their hyperparameters: one table per algorithm, validated with named errors.

| algorithm | estimator (classification / regression) | hyperparameters (default) |
|---|---|---|
| linear | SGDClassifier / SGDRegressor, one ``partial_fit`` per pass | max_passes (10), penalty l1, l2, elasticnet, none (l2), alpha = the L1/L2 amount (1e-4), l1_ratio (0.15), shuffle (true), loss (log_loss, modified_huber / squared_error, huber, epsilon_insensitive), learning_rate (optimal / invscaling; constant; adaptive: eta0 / 5 after 5 passes without a 1e-3 loss improvement, as scikit-learn's fit), eta0 (0.01) |
| random_forest | RandomForestClassifier / Regressor, grown in warm-start steps | n_estimators (100), max_depth (none), min_samples_leaf (1), max_features sqrt, log2, all (sqrt / all), bootstrap (true), n_jobs (1) |
| gradient_boosting | HistGradientBoostingClassifier / Regressor, warm-start steps | max_iter (100), learning_rate (0.1), max_depth (none), max_leaf_nodes (31), min_samples_leaf (20), l2_regularization (0), early_stopping (false) |
| mlp | MLPClassifier / MLPRegressor, one ``partial_fit`` per epoch | hidden_layer_sizes ([64]; or "64-32"), activation relu, tanh, logistic (relu), alpha (1e-4), learning_rate_init (1e-3), max_iter = epochs (200), batch_size (none = min(200, rows)), n_iter_no_change (10), tol (1e-4) |

Amazon ML's linear knobs map as: maximum passes -> ``max_passes``; L1 or L2 regularization
amount -> ``penalty`` + ``alpha``; shuffle type -> ``shuffle``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onyxserve.training.errors import TrainingError

CLASSIFICATION = ("binary", "multiclass")
TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Param:
    kind: str  # int | float | bool | choice | layers
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: Sequence[Any] = ()
    nullable: bool = False
    open_low: bool = False  # low itself is not allowed
    log: bool = False  # a hint for search spaces

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "layers":
            return 'a list of 1-5 layer widths (1-4096), e.g. [64, 32] or "64-32"'
        lo = f"> {self.low:g}" if self.open_low else f">= {self.low:g}"
        kind = "a whole number" if self.kind == "int" else "a number"
        return f"{kind} {lo} and <= {self.high:g}" + (" or null" if self.nullable else "")


def _linear(task: str) -> dict[str, Param]:
    classify = task in CLASSIFICATION
    return {
        "max_passes": Param("int", 10, 1, 10_000),
        "penalty": Param("choice", "l2", choices=("l1", "l2", "elasticnet", "none")),
        "alpha": Param("float", 1e-4, 0, 100, open_low=True, log=True),
        "l1_ratio": Param("float", 0.15, 0, 1),
        "shuffle": Param("bool", True),
        "loss": Param(
            "choice",
            "log_loss" if classify else "squared_error",
            choices=("log_loss", "modified_huber")
            if classify
            else ("squared_error", "huber", "epsilon_insensitive"),
        ),
        "learning_rate": Param(
            "choice",
            "optimal" if classify else "invscaling",
            choices=("optimal", "invscaling", "constant", "adaptive"),
        ),
        "eta0": Param("float", 0.01, 0, 10, open_low=True, log=True),
    }


def _forest(task: str) -> dict[str, Param]:
    return {
        "n_estimators": Param("int", 100, 1, 5000),
        "max_depth": Param("int", None, 1, 1000, nullable=True),
        "min_samples_leaf": Param("int", 1, 1, 1_000_000),
        "max_features": Param(
            "choice", "sqrt" if task in CLASSIFICATION else "all", choices=("sqrt", "log2", "all")
        ),
        "bootstrap": Param("bool", True),
        "n_jobs": Param("int", 1, 1, 64),
    }


def _boosting(task: str) -> dict[str, Param]:
    return {
        "max_iter": Param("int", 100, 1, 10_000),
        "learning_rate": Param("float", 0.1, 0, 1, open_low=True, log=True),
        "max_depth": Param("int", None, 1, 1000, nullable=True),
        "max_leaf_nodes": Param("int", 31, 2, 100_000),
        "min_samples_leaf": Param("int", 20, 1, 1_000_000),
        "l2_regularization": Param("float", 0.0, 0, 1e6),
        "early_stopping": Param("bool", False),
    }


def _mlp(task: str) -> dict[str, Param]:
    return {
        "hidden_layer_sizes": Param("layers", [64]),
        "activation": Param("choice", "relu", choices=("relu", "tanh", "logistic")),
        "alpha": Param("float", 1e-4, 0, 100, log=True),
        "learning_rate_init": Param("float", 1e-3, 0, 1, open_low=True, log=True),
        "max_iter": Param("int", 200, 1, 10_000),
        "batch_size": Param("int", None, 1, 1_000_000, nullable=True),
        "n_iter_no_change": Param("int", 10, 1, 10_000),
        "tol": Param("float", 1e-4, 0, 1),
    }


ALGORITHMS = {"linear": _linear, "random_forest": _forest, "gradient_boosting": _boosting, "mlp": _mlp}


def param_table(algorithm: str, task: str) -> dict[str, Param]:
    if algorithm not in ALGORITHMS:
        raise TrainingError(
            f"unsupported algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}",
            where="arguments",
            key="algorithm",
        )
    return ALGORITHMS[algorithm](task)


def check_value(name: str, spec: Param, value: Any, where: str = "params") -> Any:
    """``value`` converted to the parameter's type, or a TrainingError naming ``name``."""
    if value is None and spec.nullable:
        return None
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
    elif spec.kind == "choice":
        if value in spec.choices:
            return value
    elif spec.kind == "layers":
        layers = _layers(value)
        if layers is not None:
            return layers
    elif not isinstance(value, bool) and isinstance(value, (int, float)):
        if spec.kind == "int" and not float(value).is_integer():
            pass
        elif spec.low <= value <= spec.high and not (spec.open_low and value == spec.low):
            return int(value) if spec.kind == "int" else float(value)
    raise TrainingError(f"{value!r} is not allowed; expected {spec.describe()}", where=where, key=name)


def _layers(value: Any) -> list[int] | None:
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.replace(",", "-").split("-") if v.strip()]
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 5:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in value):
        return None
    return list(value)


def validate_params(
    algorithm: str, task: str, params: Mapping[str, Any] | None, where: str = "params"
) -> dict[str, Any]:
    """Every hyperparameter of ``algorithm`` for ``task``: the given ones checked, the rest defaulted."""
    table = param_table(algorithm, task)
    params = dict(params or {})
    if not isinstance(params, dict):
        raise TrainingError("hyperparameters are a JSON object", where=where)
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise TrainingError(
            f"unknown hyperparameter for {algorithm}; expected some of {sorted(table)}",
            where=where,
            key=unknown[0],
        )
    out = {
        name: check_value(name, spec, params[name], where) if name in params else spec.default
        for name, spec in table.items()
    }
    if algorithm == "linear" and out["learning_rate"] in ("constant", "adaptive") and "eta0" not in params:
        out["eta0"] = 0.01
    return out


def build_estimator(algorithm: str, task: str, params: Mapping[str, Any], seed: int) -> Any:
    """The unfitted estimator for validated ``params`` (class weights are applied as sample weights)."""
    classify = task in CLASSIFICATION
    p = dict(params)
    if algorithm == "linear":
        from sklearn.linear_model import SGDClassifier, SGDRegressor

        cls = SGDClassifier if classify else SGDRegressor
        return cls(
            loss=p["loss"],
            penalty=None if p["penalty"] == "none" else p["penalty"],
            alpha=p["alpha"],
            l1_ratio=p["l1_ratio"],
            max_iter=p["max_passes"],
            shuffle=p["shuffle"],
            learning_rate=p["learning_rate"],
            eta0=p["eta0"],
            random_state=seed,
        )
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if classify else RandomForestRegressor
        return cls(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=None if p["max_features"] == "all" else p["max_features"],
            bootstrap=p["bootstrap"],
            n_jobs=p["n_jobs"],
            random_state=seed,
        )
    if algorithm == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(
            max_iter=p["max_iter"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            max_leaf_nodes=p["max_leaf_nodes"],
            min_samples_leaf=p["min_samples_leaf"],
            l2_regularization=p["l2_regularization"],
            early_stopping=p["early_stopping"],
            random_state=seed,
        )
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if classify else MLPRegressor
    return cls(
        hidden_layer_sizes=tuple(p["hidden_layer_sizes"]),
        activation=p["activation"],
        alpha=p["alpha"],
        learning_rate_init=p["learning_rate_init"],
        max_iter=p["max_iter"],
        batch_size="auto" if p["batch_size"] is None else p["batch_size"],
        n_iter_no_change=p["n_iter_no_change"],
        tol=p["tol"],
        random_state=seed,
    )
