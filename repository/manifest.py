"""The manifest: everything the server must know about one model version.

It is the contract between export (training side) and serving: written once next to
``model.onnx``, read by the server, the batch scorer and drift monitoring. Plain JSON, so it
can be read by people and by other languages; parsed here into frozen dataclasses that are
validated once at load time, so nothing on the request path re-checks them.

Normalization of a numeric feature is canonical: ``out = clip((impute(x) - offset) / divisor *
scale + shift, clip_low, clip_high)``, each operation rounded on its own. Any chain of imputer,
affine scalers and clipping that the export accepts is folded into this one form, which is what
the compiled core runs; a single scaler (plus imputer and clipping) keeps scikit-learn's own
operations, so the core's float64 value is the pipeline's bit for bit. A binned numeric
feature (``bins``) then writes the one-hot of its bin instead of the value.

``crosses`` are derived categorical features: the raw category strings of two categorical
input features joined as ``a + separator + b``, one-hot encoded. ``features`` stays exactly
the inputs a client sends; an input only a cross reads has the encoding ``none`` (no column).

A text feature writes no column of the core's matrix: its strings go to their own string input
of the ONNX graph, which tokenizes and vectorizes them (n-grams, tf-idf). The server only
decodes UTF-8 and, when the manifest says so, lowercases -- Python's ``str.lower``, exactly what
scikit-learn's vectorizers do (ONNX's StringNormalizer depends on the host's locales).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from onyxserve.errors import OnyxserveError

FORMAT = "onyxserve.manifest/1"
# /2: a manifest that uses a numeric divisor or shift, or a float64 model input. A reader of /1
# would ignore those fields and serve wrong scores; it refuses the format instead. Manifests
# that need none of them are still written as /1, servable by older servers.
FORMAT_V2 = "onyxserve.manifest/2"
FORMATS = (FORMAT, FORMAT_V2)
TASKS = ("binary", "multiclass", "regression")
FEATURE_TYPES = ("numeric", "binary", "categorical", "text")

Task = Literal["binary", "multiclass", "regression"]


class ManifestError(OnyxserveError, ValueError):
    """A manifest that is missing a field or contradicts itself; names the field. A ``ValueError``
    too, as it always was."""


@dataclass(frozen=True)
class NumericSpec:
    """``out = clip((x - offset) / divisor * scale + shift, clip_low, clip_high)`` with NaN
    handled first (``divisor`` 1 and ``shift`` 0, the defaults, are exact no-ops)."""

    impute: float | None = None  # replaces NaN; None means no imputer
    allow_nan: bool = False  # without an imputer: pass NaN through (trees split on it) or reject
    offset: float = 0.0
    scale: float = 1.0
    clip_low: float = -math.inf  # bounds apply to the scaled value
    clip_high: float = math.inf
    # Interior bin edges in the units of ``out``: the feature writes the one-hot of bin
    # ``#{edges <= out}`` (KBinsDiscretizer's searchsorted side='right'), len(bins) + 1 columns.
    # None: not binned (one column, the value itself).
    bins: tuple[float, ...] | None = None
    # StandardScaler/RobustScaler/MaxAbsScaler divide by their scale_, MinMaxScaler adds its
    # min_: kept as such rather than folded into offset/scale, whose rounding differs by an ulp
    divisor: float = 1.0
    shift: float = 0.0

    @property
    def width(self) -> int:
        return 1 if self.bins is None else len(self.bins) + 1

    def normalized(self, x: Any) -> Any:
        """The value rule after NaN handling (a float or a numpy array), in the compiled core's
        operations and order, so with the same roundings; before binning."""
        import numpy as np

        return np.clip((x - self.offset) / self.divisor * self.scale + self.shift, self.clip_low, self.clip_high)


@dataclass(frozen=True)
class CategoricalSpec:
    """Category string -> one-hot columns or one ordinal column; ``none``: no column (an input
    only a cross reads; its categories, if any, are for drift monitoring)."""

    categories: tuple[str, ...]
    encoding: Literal["onehot", "ordinal", "none"] = "onehot"
    drop: int | None = None  # one-hot: index of the category with no column (drop='first'/'if_binary')
    unknown: Literal["error", "ignore"] = "error"  # ignore: one-hot all zeros, ordinal unknown_value
    unknown_value: float = math.nan  # ordinal only
    impute: str | None = None  # replaces a missing value (empty string); None rejects it

    @property
    def width(self) -> int:
        if self.encoding == "ordinal":
            return 1
        if self.encoding == "none":
            return 0
        return len(self.categories) - (self.drop is not None)


@dataclass(frozen=True)
class TextSpec:
    """Free text fed to the ONNX graph's string input ``input_name`` ([N, 1]); missing is ""."""

    input_name: str
    lowercase: bool = False


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: Literal["numeric", "binary", "categorical", "text"]
    column: int  # first column this feature writes in the model's input matrix
    numeric: NumericSpec | None = None
    categorical: CategoricalSpec | None = None
    text: TextSpec | None = None

    @property
    def width(self) -> int:
        """Columns this feature writes in the core's matrix (text writes none)."""
        if self.text is not None:
            return 0
        if self.categorical is not None:
            return self.categorical.width
        return self.numeric.width if self.numeric is not None else 1

    @property
    def is_categorical(self) -> bool:
        return self.categorical is not None

    @property
    def is_text(self) -> bool:
        return self.text is not None

    @property
    def is_bytes(self) -> bool:
        """Sent as a V2 BYTES tensor (categorical or text) rather than numbers."""
        return self.categorical is not None or self.text is not None


@dataclass(frozen=True)
class CrossSpec:
    """A derived categorical feature: ``inputs[0] + separator + inputs[1]`` of the raw category
    strings (a missing part is ""), looked up in ``categorical`` and one-hot encoded; a key not
    in the table (rare or never seen in training) is the all-zero row."""

    name: str
    inputs: tuple[str, str]  # two categorical features, as the client sends them
    column: int  # first column of its one-hot block
    categorical: CategoricalSpec
    separator: str = "|"

    @property
    def width(self) -> int:
        return self.categorical.width


INPUT_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ModelSpec:
    """The ONNX graph's interface: one ``input_dtype`` input ``[N, input_width]`` (the core's
    output), plus one string input ``[N, 1]`` per text feature (named in its TextSpec)."""

    file: str
    sha256: str
    input_name: str
    input_width: int
    # served output name -> ONNX output name: {"label", "probabilities"} or {"value"}
    outputs: dict[str, str]
    # float64 for estimators that compare in double (HistGradientBoosting: x <= threshold in
    # float64); float32 otherwise, and for manifests written before the field existed
    input_dtype: str = "float32"


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: Task
    features: tuple[FeatureSpec, ...]
    model: ModelSpec
    labels: tuple[Any, ...] | None = None  # class labels in probability-column order
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)  # training distributions, for drift
    created_at: str = ""
    crosses: tuple[CrossSpec, ...] = ()  # derived from pairs of features; computed, not sent

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def all_numeric(self) -> bool:
        return not any(f.is_bytes for f in self.features)

    @property
    def text_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.is_text)

    @property
    def format(self) -> str:
        """The oldest format that holds everything this manifest says."""
        exact = any(f.numeric is not None and (f.numeric.divisor != 1.0 or f.numeric.shift != 0.0) for f in self.features)
        return FORMAT_V2 if exact or self.model.input_dtype != "float32" else FORMAT

    def to_json(self) -> str:
        data = {"format": self.format, **asdict(self)}
        return json.dumps(_encode_floats(data), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "manifest.json") -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{source}: not valid JSON: {exc}") from None
        return parse_manifest(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        return cls.from_json(path.read_text(encoding="utf-8"), str(path))


def _encode_floats(value: Any) -> Any:
    """JSON has no Infinity/NaN: write them as strings the parser turns back."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _encode_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_floats(v) for v in value]
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ManifestError(f"{where}: missing field '{key}'")
    return data[key]


def _parse_feature(data: dict[str, Any], where: str) -> FeatureSpec:
    name = _require(data, "name", where)
    ftype = _require(data, "type", where)
    where = f"{where} ('{name}')"
    if ftype not in FEATURE_TYPES:
        raise ManifestError(f"{where}: type must be one of {FEATURE_TYPES}, got {ftype!r}")
    numeric = categorical = None
    if data.get("numeric") is not None:
        n = data["numeric"]
        impute = n.get("impute")
        numeric = NumericSpec(
            impute=None if impute is None else _float(impute, f"{where}.numeric.impute"),
            allow_nan=bool(n.get("allow_nan", False)),
            offset=_float(n.get("offset", 0.0), f"{where}.numeric.offset"),
            scale=_float(n.get("scale", 1.0), f"{where}.numeric.scale"),
            clip_low=_float(n.get("clip_low", "-inf"), f"{where}.numeric.clip_low"),
            clip_high=_float(n.get("clip_high", "inf"), f"{where}.numeric.clip_high"),
            divisor=_float(n.get("divisor", 1.0), f"{where}.numeric.divisor"),
            shift=_float(n.get("shift", 0.0), f"{where}.numeric.shift"),
        )
        if not all(math.isfinite(v) for v in (numeric.offset, numeric.scale, numeric.divisor, numeric.shift)):
            raise ManifestError(f"{where}: offset, divisor, scale and shift must be finite")
        if numeric.divisor == 0.0:
            raise ManifestError(f"{where}: divisor must not be 0")
        if numeric.clip_low > numeric.clip_high:
            raise ManifestError(f"{where}: clip_low > clip_high")
        if n.get("bins") is not None:
            numeric = replace(numeric, bins=_parse_bins(n["bins"], numeric, f"{where}.numeric.bins"))
    if data.get("categorical") is not None:
        c = data["categorical"]
        cats = tuple(str(v) for v in _require(c, "categories", f"{where}.categorical"))
        if len(set(cats)) != len(cats):
            raise ManifestError(f"{where}: duplicate categories")
        categorical = CategoricalSpec(
            categories=cats,
            encoding=c.get("encoding", "onehot"),
            drop=c.get("drop"),
            unknown=c.get("unknown", "error"),
            unknown_value=_float(c.get("unknown_value", "nan"), f"{where}.categorical.unknown_value"),
            impute=c.get("impute"),
        )
        if categorical.encoding not in ("onehot", "ordinal", "none"):
            raise ManifestError(f"{where}: encoding must be 'onehot', 'ordinal' or 'none'")
        if categorical.encoding == "none" and (
            categorical.unknown != "ignore" or categorical.drop is not None or categorical.impute is not None
        ):
            raise ManifestError(f"{where}: encoding 'none' writes no column: unknown must be 'ignore', drop and impute unset")
        if categorical.unknown not in ("error", "ignore"):
            raise ManifestError(f"{where}: unknown must be 'error' or 'ignore'")
        if categorical.drop is not None and not 0 <= categorical.drop < len(cats):
            raise ManifestError(f"{where}: drop index out of range")
    if ftype == "categorical" and categorical is None:
        raise ManifestError(f"{where}: a categorical feature needs a 'categorical' section")
    if ftype in ("numeric", "binary") and numeric is None:
        numeric = NumericSpec()
    text = None
    if ftype == "text":
        t = data.get("text")
        if not isinstance(t, dict) or not isinstance(t.get("input_name"), str) or not t["input_name"]:
            raise ManifestError(f"{where}: a text feature needs a 'text' section with its ONNX 'input_name'")
        text = TextSpec(input_name=t["input_name"], lowercase=bool(t.get("lowercase", False)))
        if numeric is not None or categorical is not None:
            raise ManifestError(f"{where}: a text feature has no 'numeric' or 'categorical' section")
    column = _require(data, "column", where)
    if not isinstance(column, int) or column < 0:
        raise ManifestError(f"{where}: column must be a non-negative integer")
    return FeatureSpec(
        name=str(name), type=ftype, column=column, numeric=numeric, categorical=categorical, text=text
    )


def parse_manifest(data: dict[str, Any], source: str = "manifest.json") -> Manifest:
    if data.get("format") not in FORMATS:
        raise ManifestError(f"{source}: format must be one of {list(FORMATS)}, got {data.get('format')!r}")
    task = _require(data, "task", source)
    if task not in TASKS:
        raise ManifestError(f"{source}: task must be one of {TASKS}, got {task!r}")
    raw_features = _require(data, "features", source)
    if not raw_features:
        raise ManifestError(f"{source}: 'features' is empty")
    features = tuple(_parse_feature(f, f"{source}: features[{i}]") for i, f in enumerate(raw_features))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ManifestError(f"{source}: duplicate feature names")
    m = _require(data, "model", source)
    model = ModelSpec(
        file=_require(m, "file", f"{source}: model"),
        sha256=_require(m, "sha256", f"{source}: model"),
        input_name=_require(m, "input_name", f"{source}: model"),
        input_width=int(_require(m, "input_width", f"{source}: model")),
        outputs=dict(_require(m, "outputs", f"{source}: model")),
        input_dtype=m.get("input_dtype", "float32"),
    )
    if model.input_dtype not in INPUT_DTYPES:
        raise ManifestError(f"{source}: model.input_dtype must be one of {INPUT_DTYPES}, got {model.input_dtype!r}")
    crosses = _parse_crosses(data.get("crosses") or [], features, source)
    _check_columns((*features, *crosses), model.input_width, source)
    text_inputs = [f.text.input_name for f in features if f.text is not None]
    if len(set(text_inputs)) != len(text_inputs) or model.input_name in text_inputs:
        raise ManifestError(f"{source}: text features' input names must be distinct and differ from model.input_name")
    expected = {"value"} if task == "regression" else {"label", "probabilities"}
    if set(model.outputs) != expected:
        raise ManifestError(f"{source}: model.outputs must name {sorted(expected)} for task '{task}'")
    labels = data.get("labels")
    if task != "regression" and not labels:
        raise ManifestError(f"{source}: a {task} model needs 'labels'")
    return Manifest(
        name=str(_require(data, "name", source)),
        version=str(_require(data, "version", source)),
        task=task,
        features=features,
        model=model,
        labels=tuple(labels) if labels else None,
        metrics=data.get("metrics") or {},
        lineage=data.get("lineage") or {},
        baseline=data.get("baseline") or {},
        created_at=data.get("created_at", ""),
        crosses=crosses,
    )


def _parse_bins(value: Any, numeric: NumericSpec, where: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ManifestError(f"{where}: expected a list of bin edges, got {value!r}")
    bins = tuple(_float(v, f"{where}[{i}]") for i, v in enumerate(value))
    if not all(math.isfinite(b) for b in bins) or any(a >= b for a, b in itertools.pairwise(bins)):
        raise ManifestError(f"{where}: bin edges must be finite and strictly increasing")
    if numeric.allow_nan:
        raise ManifestError(f"{where}: a binned feature has no bin for NaN: impute it or set allow_nan false")
    return bins


def _parse_crosses(raw: Any, features: tuple[FeatureSpec, ...], source: str) -> tuple[CrossSpec, ...]:
    if not isinstance(raw, list):
        raise ManifestError(f"{source}: 'crosses' must be a list")
    by_name = {f.name: f for f in features}
    crosses: list[CrossSpec] = []
    for i, c in enumerate(raw):
        base = where = f"{source}: crosses[{i}]"
        if not isinstance(c, dict):
            raise ManifestError(f"{where}: expected an object")
        name = str(_require(c, "name", where))
        where = f"{where} ('{name}')"
        if name in by_name or name in {x.name for x in crosses}:
            raise ManifestError(f"{where}: name is already used by a feature or another cross")
        inputs = _require(c, "inputs", where)
        if not isinstance(inputs, list) or len(inputs) != 2 or inputs[0] == inputs[1]:
            raise ManifestError(f"{where}.inputs: must name two different features, got {inputs!r}")
        for parent in inputs:
            f = by_name.get(parent)
            if f is None:
                raise ManifestError(f"{where}.inputs: '{parent}' is not a feature")
            if f.type != "categorical":
                raise ManifestError(f"{where}.inputs: '{parent}' is {f.type}; a cross reads categorical features only")
        separator = c.get("separator", "|")
        if not isinstance(separator, str):
            raise ManifestError(f"{where}.separator: must be a string")
        # the categorical section follows the feature rules, with what the kernel's cross supports
        spec = _parse_feature(
            {"name": name, "type": "categorical", "column": _require(c, "column", where),
             "categorical": _require(c, "categorical", where)},
            base,
        )
        cat = spec.categorical
        if cat.encoding != "onehot" or cat.unknown != "ignore" or cat.impute is not None:
            raise ManifestError(f"{where}.categorical: a cross is one-hot with unknown 'ignore' and no impute")
        crosses.append(CrossSpec(name, (str(inputs[0]), str(inputs[1])), spec.column, cat, separator))
    return tuple(crosses)


def _check_columns(features: tuple[FeatureSpec | CrossSpec, ...], width: int, source: str) -> None:
    """Every model input column is written by exactly one feature or cross."""
    owner: dict[int, str] = {}
    for f in features:
        for col in range(f.column, f.column + f.width):
            if col >= width:
                raise ManifestError(f"{source}: feature '{f.name}' writes column {col} >= input_width {width}")
            if col in owner:
                raise ManifestError(f"{source}: features '{owner[col]}' and '{f.name}' both write column {col}")
            owner[col] = f.name
    if len(owner) != width:
        missing = sorted(set(range(width)) - set(owner))
        raise ManifestError(f"{source}: model input columns {missing[:5]} are written by no feature")
