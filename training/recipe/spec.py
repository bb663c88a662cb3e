"""Recipes: how each attribute of a datasource becomes model input, as a JSON document.

    {
      "version": 1,
      "defaults": {"NUMERIC": [{"step": "impute", "strategy": "median"}, {"step": "normalize"}]},
      "features": {
        "amount":   [{"step": "impute", "strategy": "median"},
                     {"step": "clip", "method": "iqr", "k": 3},
                     {"step": "normalize", "method": "minmax"}],
        "age":      [{"step": "impute"}, {"step": "quantile_bin", "bins": 10}],
        "merchant": [{"step": "impute", "strategy": "constant", "value": "none"},
                     {"step": "onehot", "min_count": 20, "max_categories": 50}],
        "note":     [{"step": "text", "lowercase": true, "no_punct": true, "ngrams": [1, 2]}],
        "id":       "drop"
      },
      "exclude": ["Time"],
      "cartesian": [{"columns": ["merchant", "online"], "min_count": 10}]
    }

Every key is optional; ``{}`` is the default recipe. A step is ``{"step": NAME, option: value}``
or just ``"NAME"`` (all options default). Steps of one attribute run in this order, each at most
once: ``impute``, ``clip``, then ``normalize`` *or* ``quantile_bin``; ``onehot`` and ``text`` end
their attribute's steps.

| step | applies to | options (default) |
|---|---|---|
| impute | NUMERIC, BINARY | strategy: mean, median, most_frequent, constant (median); value (0) |
| impute | CATEGORICAL | strategy: most_frequent, constant (constant); value ("__missing__") |
| clip | NUMERIC, BINARY | method: quantile (low 0.01, high 0.99) or iqr (k 1.5: Q1-k*IQR..Q3+k*IQR) |
| normalize | NUMERIC, BINARY | method: standard, minmax (standard) |
| quantile_bin | NUMERIC, BINARY | bins: 2..1000 (10); one-hot of the bin |
| onehot | CATEGORICAL | min_count (5; <1 = fraction of rows), max_categories (none) |
| text | TEXT | lowercase (true), no_punct (true), ngrams [lo, hi] (1, 2), max_features (1000), weighting: tfidf, count (tfidf) |

Per-type defaults when an attribute has no entry: NUMERIC impute median + normalize standard;
BINARY impute most_frequent; CATEGORICAL impute constant "__missing__" + onehot (min_count 5);
TEXT text (lowercase, no_punct, 1-2 grams, tfidf, 1000 terms). ``"defaults"`` replaces these per
type. ``"drop"`` (or ``"exclude"``) leaves an attribute out. ``"cartesian"`` adds a derived
categorical feature ``a_x_b`` from two CATEGORICAL/BINARY attributes (values joined ``a|b``),
one-hot encoded with rare folding (``min_count``, ``max_categories``); the two attributes keep
their own steps too.

Rare folding: categories below ``min_count`` (or past ``max_categories``) and categories never seen
in training share one bucket, ``__rare__``, encoded as the all-zero row of the one-hot block.

What can be served (``serving_problems``): impute, clip, normalize, quantile_bin and onehot fold
into the compiled core (see ``sklearn_split``): a binned attribute is served as the one-hot of its
bin (the fitted KBinsDiscretizer edges, after impute and clip). ``text`` runs inside the ONNX graph
(tokenizer, n-grams, tf-idf; see ``onnx_text``), the server lowercasing first when asked. A
``cartesian`` of two CATEGORICAL attributes is served as a manifest cross: the core joins the raw
values the client sends (missing as "") and looks the key up in the kept categories; an attribute
used only by a cartesian is still a client input. A cartesian with a BINARY attribute trains but is
refused at export (the client sends BINARY as a number, training joins its str() form), with a
message naming the cartesian and the attribute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onyxserve.training.datasource.schema import AttributeType
from onyxserve.training.errors import TrainingError

ORDER = ("impute", "clip", "normalize", "quantile_bin", "onehot", "text")
NUMERIC_STEPS = {"impute", "clip", "normalize", "quantile_bin"}
STEPS_FOR = {
    AttributeType.NUMERIC: NUMERIC_STEPS,
    AttributeType.BINARY: NUMERIC_STEPS,
    AttributeType.CATEGORICAL: {"impute", "onehot"},
    AttributeType.TEXT: {"text"},
}
UNSERVABLE = {
}
MISSING_CATEGORY = "__missing__"


@dataclass(frozen=True)
class Step:
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.kind, **self.options}


@dataclass(frozen=True)
class Cartesian:
    columns: tuple[str, str]
    min_count: float = 5
    max_categories: int | None = None

    @property
    def name(self) -> str:
        return "_x_".join(self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "min_count": self.min_count,
            "max_categories": self.max_categories,
        }


DEFAULTS: dict[AttributeType, tuple[Step, ...]] = {
    AttributeType.NUMERIC: (
        Step("impute", {"strategy": "median"}),
        Step("normalize", {"method": "standard"}),
    ),
    AttributeType.BINARY: (Step("impute", {"strategy": "most_frequent"}),),
    AttributeType.CATEGORICAL: (
        Step("impute", {"strategy": "constant", "value": MISSING_CATEGORY}),
        Step("onehot", {"min_count": 5, "max_categories": None}),
    ),
    AttributeType.TEXT: (
        Step(
            "text",
            {
                "lowercase": True,
                "no_punct": True,
                "ngrams": [1, 2],
                "max_features": 1000,
                "weighting": "tfidf",
            },
        ),
    ),
}


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe; ``plan(datasource)`` resolves it against a schema."""

    defaults: Mapping[AttributeType, tuple[Step, ...]] = field(default_factory=dict)
    features: Mapping[str, tuple[Step, ...] | None] = field(default_factory=dict)  # None = drop
    exclude: tuple[str, ...] = ()
    cartesian: tuple[Cartesian, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "defaults": {t.value: [s.to_dict() for s in steps] for t, steps in self.defaults.items()},
            "features": {
                n: "drop" if steps is None else [s.to_dict() for s in steps]
                for n, steps in self.features.items()
            },
            "exclude": list(self.exclude),
            "cartesian": [c.to_dict() for c in self.cartesian],
        }

    def plan(self, datasource: Any) -> Plan:
        """Steps per used attribute (in datasource order); errors name unknown or misused columns."""
        schema = datasource.schema
        usable = datasource.features()
        for key, names in (("features", list(self.features)), ("exclude", list(self.exclude))):
            for name in names:
                if name not in schema.attributes:
                    raise TrainingError(
                        f"unknown attribute {name!r}; the datasource has {usable}",
                        where="recipe",
                        key=f"{key}.{name}",
                    )
                if name not in usable:
                    raise TrainingError(
                        f"{name!r} is the target, the row id or excluded by the schema; it cannot be a feature",
                        where="recipe",
                        key=f"{key}.{name}",
                    )
        steps: dict[str, tuple[Step, ...]] = {}
        for name in usable:
            kind = schema.attributes[name]
            if name in self.exclude or (name in self.features and self.features[name] is None):
                continue
            chosen = self.features.get(name) or self.defaults.get(kind) or DEFAULTS[kind]
            key = f"features.{name}" if name in self.features else f"defaults.{kind.value}"
            _check_steps(chosen, kind, key)
            steps[name] = tuple(chosen)
        for i, cross in enumerate(self.cartesian):
            for col in cross.columns:
                if col not in usable:
                    raise TrainingError(
                        f"unknown or unusable attribute {col!r}",
                        where="recipe",
                        key=f"cartesian[{i}].columns",
                    )
                if schema.attributes[col] not in (AttributeType.CATEGORICAL, AttributeType.BINARY):
                    raise TrainingError(
                        f"{col!r} is {schema.attributes[col].value}; a cartesian needs CATEGORICAL or BINARY attributes",
                        where="recipe",
                        key=f"cartesian[{i}].columns",
                    )
        if not steps and not self.cartesian:
            raise TrainingError("the recipe leaves no feature for the model", where="recipe", key="features")
        crossed = {c: schema.attributes[c] for cross in self.cartesian for c in cross.columns}
        return Plan(steps, {n: schema.attributes[n] for n in steps}, self.cartesian, crossed)


@dataclass(frozen=True)
class Plan:
    steps: Mapping[str, tuple[Step, ...]]  # attribute -> its steps, in datasource order
    types: Mapping[str, AttributeType]
    cartesian: tuple[Cartesian, ...]
    cartesian_types: Mapping[str, AttributeType] = field(default_factory=dict)  # of their columns

    @property
    def inputs(self) -> list[str]:
        """The raw columns the pipeline reads (what a client would send)."""
        names = list(self.steps)
        for cross in self.cartesian:
            names += [c for c in cross.columns if c not in names]
        return names

    def serving_problems(self) -> list[str]:
        """Why the export would refuse this recipe (empty when it can be served)."""
        problems = []
        for name, steps in self.steps.items():
            for step in steps:
                if step.kind in UNSERVABLE:
                    problems.append(
                        f"attribute {name!r}: recipe step {step.kind!r} cannot be served: {UNSERVABLE[step.kind]}"
                    )
        for cross in self.cartesian:
            for col in cross.columns:
                if self.cartesian_types.get(col) is AttributeType.BINARY:
                    problems.append(
                        f"cartesian {cross.name!r} cannot be served: attribute {col!r} is BINARY, which the client"
                        " sends as a number while training joins its text form; cross CATEGORICAL attributes"
                        " (declare it CATEGORICAL in the schema) or remove the cartesian to export"
                    )
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {
                n: {"type": self.types[n].value, "steps": [s.to_dict() for s in st]}
                for n, st in self.steps.items()
            },
            "cartesian": [c.to_dict() for c in self.cartesian],
        }


# ---- parsing -----------------------------------------------------------------------------

_TOP_KEYS = {"version", "defaults", "features", "exclude", "cartesian"}


def load_recipe(path: str | Path) -> Recipe:
    where = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TrainingError(f"cannot read recipe: {exc.strerror or exc}", where=where) from None
    except json.JSONDecodeError as exc:
        raise TrainingError(
            f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", where=where
        ) from None
    return parse_recipe(obj, where)


def parse_recipe(obj: Recipe | Mapping[str, Any] | str | None, where: str = "recipe") -> Recipe:
    """A Recipe from its JSON text or decoded dict (or a Recipe, or None for the default one)."""
    if obj is None:
        return Recipe()
    if isinstance(obj, Recipe):
        return obj
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"not valid JSON: {exc.msg} at column {exc.colno}", where=where) from None
    if not isinstance(obj, Mapping):
        raise TrainingError("a recipe is a JSON object", where=where)
    unknown = sorted(set(obj) - _TOP_KEYS)
    if unknown:
        raise TrainingError(
            f"unknown field; expected some of {sorted(_TOP_KEYS)}", where=where, key=unknown[0]
        )
    if obj.get("version", 1) != 1:
        raise TrainingError(
            f"version {obj.get('version')!r} is not supported (only 1)", where=where, key="version"
        )
    defaults = {}
    for type_name, steps in _mapping(obj, "defaults", where).items():
        try:
            kind = AttributeType(str(type_name).upper())
        except ValueError:
            raise TrainingError(
                f"unknown attribute type; expected one of {[t.value for t in AttributeType]}",
                where=where,
                key=f"defaults.{type_name}",
            ) from None
        defaults[kind] = _parse_steps(steps, f"defaults.{type_name}", where)
        _check_steps(defaults[kind], kind, f"defaults.{type_name}", where)
    features: dict[str, tuple[Step, ...] | None] = {}
    for name, steps in _mapping(obj, "features", where).items():
        features[name] = None if steps == "drop" else _parse_steps(steps, f"features.{name}", where)
    exclude = obj.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise TrainingError("must be a list of attribute names", where=where, key="exclude")
    crosses = obj.get("cartesian", [])
    if not isinstance(crosses, list):
        raise TrainingError('must be a list of {"columns": [a, b]}', where=where, key="cartesian")
    return Recipe(
        defaults,
        features,
        tuple(exclude),
        tuple(_parse_cartesian(c, i, where) for i, c in enumerate(crosses)),
    )


def _mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, Mapping):
        raise TrainingError("must be a JSON object", where=where, key=key)
    return value


def _parse_cartesian(obj: Any, i: int, where: str) -> Cartesian:
    key = f"cartesian[{i}]"
    if not isinstance(obj, Mapping) or set(obj) - {"columns", "min_count", "max_categories"}:
        raise TrainingError(
            'expected {"columns": [a, b], "min_count": n, "max_categories": n}', where=where, key=key
        )
    cols = obj.get("columns")
    if (
        not isinstance(cols, list)
        or len(cols) != 2
        or not all(isinstance(c, str) for c in cols)
        or cols[0] == cols[1]
    ):
        raise TrainingError("must name two different attributes", where=where, key=f"{key}.columns")
    options = _onehot_options(obj, f"{key}", where)
    return Cartesian((cols[0], cols[1]), options["min_count"], options["max_categories"])


def _parse_steps(obj: Any, key: str, where: str) -> tuple[Step, ...]:
    if not isinstance(obj, list):
        raise TrainingError('a list of steps, or "drop"', where=where, key=key)
    steps = []
    for i, item in enumerate(obj):
        k = f"{key}[{i}]"
        if isinstance(item, str):
            item = {"step": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("step"), str):
            raise TrainingError('a step is "NAME" or {"step": NAME, ...}', where=where, key=k)
        kind = item["step"]
        parser = _OPTION_PARSERS.get(kind)
        if parser is None:
            raise TrainingError(
                f"unknown step {kind!r}; expected one of {list(ORDER)}", where=where, key=f"{k}.step"
            )
        options = {o: v for o, v in item.items() if o != "step"}
        steps.append(Step(kind, parser(options, k, where)))
    return tuple(steps)


def _check_steps(steps: Sequence[Step], kind: AttributeType, key: str, where: str = "recipe") -> None:
    allowed = STEPS_FOR[kind]
    last = -1
    for i, step in enumerate(steps):
        k = f"{key}[{i}]"
        if step.kind not in allowed:
            raise TrainingError(
                f"step {step.kind!r} does not apply to a {kind.value} attribute; allowed: {sorted(allowed)}",
                where=where,
                key=k,
            )
        pos = ORDER.index(step.kind)
        if step.kind in ("normalize", "quantile_bin") and any(
            s.kind in ("normalize", "quantile_bin") for s in steps[:i]
        ):
            raise TrainingError("use normalize or quantile_bin, not both", where=where, key=k)
        if pos <= last:
            raise TrainingError(
                f"steps run in the order {list(ORDER)}, each at most once", where=where, key=k
            )
        last = pos
        if (
            kind is AttributeType.CATEGORICAL
            and step.kind == "impute"
            and step.options.get("strategy") in ("mean", "median")
        ):
            raise TrainingError(
                "a CATEGORICAL attribute imputes most_frequent or constant", where=where, key=f"{k}.strategy"
            )
    kinds = [s.kind for s in steps]
    if kind is AttributeType.CATEGORICAL and "onehot" not in kinds:
        raise TrainingError('a CATEGORICAL attribute needs an onehot step (or "drop")', where=where, key=key)
    if kind is AttributeType.TEXT and "text" not in kinds:
        raise TrainingError('a TEXT attribute needs a text step (or "drop")', where=where, key=key)


# ---- step options ------------------------------------------------------------------------


def _options(options: Mapping[str, Any], allowed: set[str], key: str, where: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TrainingError(
            f"unknown option; this step takes {sorted(allowed)}", where=where, key=f"{key}.{unknown[0]}"
        )


def _choice(
    options: Mapping[str, Any], name: str, choices: Sequence[str], default: str, key: str, where: str
) -> str:
    value = options.get(name, default)
    if value not in choices:
        raise TrainingError(f"{value!r} is not one of {list(choices)}", where=where, key=f"{key}.{name}")
    return value


def _number(
    options: Mapping[str, Any],
    name: str,
    default: Any,
    key: str,
    where: str,
    *,
    low: float,
    high: float,
    integer: bool = False,
    open_low: bool = False,
    nullable: bool = False,
) -> Any:
    value = options.get(name, default)
    if value is None and nullable:
        return None
    bad = (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not float(value).is_integer())
    )
    if not bad:
        bad = value < low or value > high or (open_low and value == low)
    if bad:
        kind = "a whole number" if integer else "a number"
        lo = f"> {low}" if open_low else f">= {low}"
        raise TrainingError(
            f"must be {kind} {lo} and <= {high}, not {value!r}", where=where, key=f"{key}.{name}"
        )
    return int(value) if integer else float(value)


def _impute_options(options: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    _options(options, {"strategy", "value"}, key, where)
    # no strategy given: median for numbers, constant for categories (chosen when compiling)
    strategy = options.get("strategy")
    if strategy is not None:
        _choice(options, "strategy", ["mean", "median", "most_frequent", "constant"], "median", key, where)
    out: dict[str, Any] = {"strategy": strategy} if strategy is not None else {}
    if "value" in options:
        if strategy not in (None, "constant"):
            raise TrainingError("value goes with strategy 'constant'", where=where, key=f"{key}.value")
        if isinstance(options["value"], bool) or not isinstance(options["value"], (int, float, str)):
            raise TrainingError("must be a number or a string", where=where, key=f"{key}.value")
        out["value"] = options["value"]
    return out


def _clip_options(options: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    _options(options, {"method", "low", "high", "k"}, key, where)
    method = _choice(options, "method", ["quantile", "iqr"], "quantile", key, where)
    if method == "iqr":
        if "low" in options or "high" in options:
            raise TrainingError(
                "low/high go with method 'quantile'; iqr takes k", where=where, key=f"{key}.method"
            )
        return {"method": method, "k": _number(options, "k", 1.5, key, where, low=0, high=1e6, open_low=True)}
    if "k" in options:
        raise TrainingError("k goes with method 'iqr'", where=where, key=f"{key}.k")
    low = _number(options, "low", 0.01, key, where, low=0, high=1)
    high = _number(options, "high", 0.99, key, where, low=0, high=1)
    if low >= high:
        raise TrainingError(f"low {low} must be below high {high}", where=where, key=f"{key}.low")
    return {"method": method, "low": low, "high": high}


def _normalize_options(options: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    _options(options, {"method"}, key, where)
    return {"method": _choice(options, "method", ["standard", "minmax"], "standard", key, where)}


def _bin_options(options: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    _options(options, {"bins"}, key, where)
    return {"bins": _number(options, "bins", 10, key, where, low=2, high=1000, integer=True)}


def _onehot_options(options: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    if "columns" not in options:
        _options(options, {"min_count", "max_categories"}, key, where)
    return {
        "min_count": _number(options, "min_count", 5, key, where, low=0, high=1e12),
        "max_categories": _number(
            options, "max_categories", None, key, where, low=1, high=1e9, integer=True, nullable=True
        ),
    }


def _text_options(options: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    _options(options, {"lowercase", "no_punct", "ngrams", "max_features", "weighting"}, key, where)
    out: dict[str, Any] = {}
    for flag in ("lowercase", "no_punct"):
        if not isinstance(options.get(flag, True), bool):
            raise TrainingError("must be true or false", where=where, key=f"{key}.{flag}")
        out[flag] = options.get(flag, True)
    grams = options.get("ngrams", [1, 2])
    if (
        not isinstance(grams, list)
        or len(grams) != 2
        or not all(isinstance(g, int) and not isinstance(g, bool) for g in grams)
        or not 1 <= grams[0] <= grams[1] <= 5
    ):
        raise TrainingError(
            f"must be [low, high] with 1 <= low <= high <= 5, not {grams!r}", where=where, key=f"{key}.ngrams"
        )
    out["ngrams"] = list(grams)
    out["max_features"] = _number(
        options, "max_features", 1000, key, where, low=1, high=1e7, integer=True, nullable=True
    )
    out["weighting"] = _choice(options, "weighting", ["tfidf", "count"], "tfidf", key, where)
    return out


_OPTION_PARSERS = {
    "impute": _impute_options,
    "clip": _clip_options,
    "normalize": _normalize_options,
    "quantile_bin": _bin_options,
    "onehot": _onehot_options,
    "text": _text_options,
}


# ---- compiling ---------------------------------------------------------------------------


def compile_recipe(recipe: Recipe | Mapping[str, Any] | str | None, datasource: Any, *, seed: int = 0):
    """The unfitted ColumnTransformer for ``recipe`` over ``datasource``'s schema, and its Plan.

    Attributes with the same steps share one transformer (each step works per column)."""
    from onyxserve.training.recipe.compile import build_transformer

    plan = parse_recipe(recipe).plan(datasource)
    return build_transformer(plan, seed=seed), plan


def fit_recipe(
    recipe: Recipe | Mapping[str, Any] | str | None, datasource: Any, frame: Any, *, seed: int = 0
):
    """The fitted ColumnTransformer for ``recipe`` on the typed rows ``frame``, and its Plan."""
    transformer, plan = compile_recipe(recipe, datasource, seed=seed)
    return transformer.fit(frame[plan.inputs]), plan
