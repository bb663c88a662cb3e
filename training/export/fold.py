"""Split a fitted scikit-learn pipeline into manifest FeatureSpecs and the bare estimator.

The preprocessing steps are not converted to ONNX: they are folded into the manifest, where
the compiled core runs them (see ``repository/manifest.py``). Each numeric column becomes the
canonical ``clip((impute(x) - offset) * scale, clip_low, clip_high)``; each categorical column
a category table for one-hot or ordinal encoding. Only fitted attributes are read.

The walk keeps one state per column of the matrix flowing through the pipeline:

- ``Raw``: an input column as the client sends it, perhaps imputed;
- ``Num``: a numeric column after affine/clip steps (a ``Chain`` in canonical form);
- ``Cat``: output column ``index`` of a categorical encoding of one input column;
- ``Bin``: output column ``index`` of the one-hot bin (KBinsDiscretizer) of a numeric column;
- ``Joined``: two raw categorical input columns joined ``a|b`` (recipe_steps.CartesianJoiner);
- ``Crossed``: output column ``index`` of the one-hot encoding of a ``Joined`` column, served
  as a manifest cross computed from the two raw inputs.
- ``CleanText``: a text column after ``TextCleaner`` (lowercase / punctuation removal);
- ``Txt``: output column ``index`` of a word vectorizer over one text column. These columns are
  not the core's: the vectorizer runs inside the ONNX graph (``onnx_text``), fed the raw string.

A step the core cannot run exactly is refused with an ExportError naming the step.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from onyxserve.repository.manifest import CategoricalSpec, CrossSpec, FeatureSpec, NumericSpec, TextSpec
from onyxserve.training.errors import ExportError
from onyxserve.training.export.onnx_text import VECTORIZERS, TextPart, text_part
from onyxserve.training.recipe.steps import CartesianJoiner, TextCleaner
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectorMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

INF = math.inf


@dataclass(frozen=True)
class Chain:
    """``clip((impute(x) - offset) / divisor * scale + shift, low, high)``; ``impute`` is in raw
    units.

    A scaler keeps scikit-learn's own operations while they fit this order (one dividing scaler,
    then one multiply-add scaler, with clips anywhere): the kernel then computes the pipeline's
    float64 value bit for bit, so a value on a tree's split threshold goes the same way. Other
    compositions are folded algebraically into ``offset`` and ``scale`` (``_as_affine``), which
    can differ from scikit-learn's value by an ulp.
    """

    impute: float | None = None
    offset: float = 0.0
    scale: float = 1.0
    low: float = -INF
    high: float = INF
    divisor: float = 1.0
    shift: float = 0.0

    def then_divide(self, m: float, d: float) -> Chain:
        """Compose ``y -> (y - m) / d`` (StandardScaler, RobustScaler, MaxAbsScaler: ``d > 0``)."""
        if d > 0 and (self.offset, self.divisor, self.scale, self.shift) == (0.0, 1.0, 1.0, 0.0):
            # a clip before: clip(x, a, b) - m) / d == clip((x - m) / d, (a - m) / d, (b - m) / d)
            # exactly, as both operations round monotonically
            return replace(self, offset=m, divisor=d, low=(self.low - m) / d, high=(self.high - m) / d)
        return self.then_affine(m, 1.0 / d)

    def then_scale_shift(self, s: float, b: float) -> Chain:
        """Compose ``y -> y * s + b`` (MinMaxScaler)."""
        if s > 0 and self.scale == 1.0 and self.shift == 0.0:
            return replace(self, scale=s, shift=b, low=self.low * s + b, high=self.high * s + b)
        if s == 0:
            return replace(self._as_affine(), scale=0.0, low=b, high=b)
        return self.then_affine(-b / s, s)

    def _as_affine(self) -> Chain:
        """The same map as ``(x - offset) * scale`` (divisor 1, shift 0), to within rounding."""
        if self.divisor == 1.0 and self.shift == 0.0:
            return self
        if self.scale == 0.0:  # constant: clip(shift, low, high)
            const = min(max(self.shift, self.low), self.high)
            return replace(self, divisor=1.0, shift=0.0, low=const, high=const)
        scale = self.scale / self.divisor
        return replace(self, offset=self.offset - self.shift / scale, scale=scale, divisor=1.0, shift=0.0)

    def then_affine(self, m: float, s: float) -> Chain:
        """Compose ``y -> (y - m) * s`` after this chain."""
        c = self._as_affine()
        if s > 0:
            low, high = (c.low - m) * s, (c.high - m) * s
        elif s < 0:
            low, high = (c.high - m) * s, (c.low - m) * s
        else:
            return replace(c, scale=0.0, low=0.0, high=0.0)
        if c.scale == 0.0:  # constant before: stays constant
            const = (min(max(0.0, c.low), c.high) - m) * s
            return replace(c, low=const, high=const)
        return replace(c, offset=c.offset + m / c.scale, scale=c.scale * s, low=low, high=high)

    def then_clip(self, a: float, b: float) -> Chain:
        """Compose ``clip(y, a, b)``: a clamp of a clamp is the clamp of its bounds."""
        return replace(self, low=min(max(self.low, a), b), high=max(min(self.high, b), a))

    def then_impute(self, value: float, step: str) -> Chain:
        """Compose an imputer after this chain by moving its fill value back to raw units."""
        if self.impute is not None:
            return self  # nothing is missing any more
        if self.scale == 0.0:
            const = min(max(self.shift, self.low), self.high)
            if value != const:
                raise ExportError(f"step {step}: imputes {value} after a step that makes the column constant")
            return replace(self, impute=self.offset)
        if not self.low <= value <= self.high:
            raise ExportError(
                f"step {step}: fills {value}, outside the clip range [{self.low}, {self.high}] of an earlier"
                " step; impute before clipping"
            )
        return replace(self, impute=(value - self.shift) / self.scale * self.divisor + self.offset)

    def numeric(self, allow_nan: bool, bins: tuple[float, ...] | None = None) -> NumericSpec:
        return NumericSpec(
            impute=self.impute, allow_nan=allow_nan, offset=self.offset, scale=self.scale, clip_low=self.low,
            clip_high=self.high, bins=bins, divisor=self.divisor, shift=self.shift,
        )


@dataclass(frozen=True)
class Raw:
    feature: str
    impute: Any = None  # raw fill value (number or category) from an imputer


@dataclass(frozen=True)
class Num:
    feature: str
    chain: Chain


@dataclass(frozen=True)
class Cat:
    feature: str
    spec: CategoricalSpec
    index: int  # which output column of the encoding


@dataclass(frozen=True)
class Bin:
    feature: str
    chain: Chain  # the value that is binned
    edges: tuple[float, ...]  # interior edges, in the chain's output units
    index: int  # which one-hot column of the bins


@dataclass(frozen=True)
class Joined:
    feature: str  # the cross's name, "a_x_b"
    inputs: tuple[str, str]
    separator: str


@dataclass(frozen=True)
class Crossed:
    feature: str
    inputs: tuple[str, str]
    separator: str
    spec: CategoricalSpec
    index: int


@dataclass(frozen=True)
class CleanText:
    feature: str
    lowercase: bool
    no_punct: bool


@dataclass(frozen=True)
class Txt:
    feature: str
    part: TextPart
    index: int  # which output column of the vectorizer


Col = Raw | Num | Cat | Bin | Joined | Crossed | CleanText | Txt


def category_str(value: Any) -> str:
    """The string a client sends for a category; a missing value is the empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return ""
        return str(int(v)) if v.is_integer() else repr(v)
    return str(value)


def _is_missing_marker(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(np.isnan(value))
    except (TypeError, ValueError):
        return False


def describe(name: str, step: Any) -> str:
    return f"'{name}' ({type(step).__name__})"


# ---- column operations -------------------------------------------------------------------


def _to_chain(col: Col, step: str) -> Chain:
    if isinstance(col, Num):
        return col.chain
    if isinstance(col, Raw):
        if col.impute is None:
            return Chain()
        if isinstance(col.impute, (str, bytes)):
            raise ExportError(f"step {step}: column '{col.feature}' holds categories, not numbers")
        return Chain(impute=float(col.impute))
    if isinstance(col, Bin):
        raise ExportError(
            f"step {step}: transforms the one-hot bin columns of feature '{col.feature}', which the serving"
            " core cannot do; bin last"
        )
    if isinstance(col, (CleanText, Txt)):
        raise ExportError(
            f"step {step}: transforms text feature '{col.feature}' as numbers; only a word vectorizer"
            " (CountVectorizer/TfidfVectorizer) may follow a text column, as the estimator's input"
        )
    raise ExportError(
        f"step {step}: scales the encoded columns of categorical feature '{col.feature}', which the"
        " serving core cannot do; scale numeric columns only (e.g. inside the ColumnTransformer)"
    )


def _affine(col: Col, compose: Callable[[Chain], Chain], identity: bool, step: str) -> Col:
    """``compose`` the column's chain with a scaler's map; ``identity``: the map is y -> y."""
    if isinstance(col, (Cat, Bin, Crossed)) and identity:
        return col
    return Num(col.feature, compose(_to_chain(col, step)))


def _clip(col: Col, a: float, b: float, step: str) -> Col:
    if isinstance(col, Cat):
        values = [0.0, 1.0] if col.spec.encoding == "onehot" else [0.0, len(col.spec.categories) - 1.0]
        if col.spec.unknown == "ignore" and not math.isnan(col.spec.unknown_value):
            values.append(col.spec.unknown_value)
        if a <= min(values) and b >= max(values):
            return col  # the bounds cannot bite
    if isinstance(col, (Bin, Crossed)) and a <= 0.0 and b >= 1.0:
        return col
    return Num(col.feature, _to_chain(col, step).then_clip(float(a), float(b)))


def _impute(col: Col, value: Any, step: str) -> Col:
    if isinstance(col, (Bin, Joined, Crossed)):
        return col  # one-hot columns and joined strings are never missing
    if isinstance(col, (CleanText, Txt)):
        raise ExportError(f"step {step}: imputes text feature '{col.feature}'; missing text is served as ''")
    if isinstance(col, Raw):
        return col if col.impute is not None else Raw(col.feature, value)
    if isinstance(col, Cat):
        if col.spec.encoding == "ordinal" and math.isnan(col.spec.unknown_value):
            raise ExportError(f"step {step}: imputes the NaN an ordinal encoder writes for unknown categories")
        return col
    if isinstance(value, (str, bytes)):
        raise ExportError(f"step {step}: fills numeric feature '{col.feature}' with the string {value!r}")
    return Num(col.feature, col.chain.then_impute(float(value), step))


def _encode(col: Col, spec: CategoricalSpec, step: str) -> list[Col]:
    if isinstance(col, Joined):
        if spec.encoding != "onehot" or spec.unknown != "ignore":
            raise ExportError(
                f"step {step}: encodes cartesian '{col.feature}' {spec.encoding} with unknown '{spec.unknown}';"
                " the serving core one-hot encodes a cross with handle_unknown='ignore' only"
            )
        return [Crossed(col.feature, col.inputs, col.separator, spec, i) for i in range(spec.width)]
    if not isinstance(col, Raw):
        raise ExportError(f"step {step}: encodes feature '{col.feature}' after it was already transformed")
    if col.impute is not None:
        spec = replace(spec, impute=category_str(col.impute))
    return [Cat(col.feature, spec, i) for i in range(spec.width)]


# ---- steps -------------------------------------------------------------------------------


def _per_column(values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.full(n, arr[0]) if arr.size == 1 else arr


def _check_width(step: Any, cols: Sequence[Col], where: str) -> None:
    n = getattr(step, "n_features_in_", None)
    if n is not None and n != len(cols):
        raise ExportError(f"step {where}: fitted on {n} columns but receives {len(cols)} here")


def _imputer(step: SimpleImputer, cols: list[Col], where: str) -> list[Col]:
    if step.add_indicator:
        raise ExportError(f"step {where} is not supported: add_indicator=True adds columns the core cannot write")
    if not _is_missing_marker(step.missing_values):
        raise ExportError(
            f"step {where} is not supported: missing_values={step.missing_values!r}; only NaN/None can be"
            " imputed by the serving core"
        )
    stats = list(step.statistics_)
    kept = []
    for col, value in zip(cols, stats):
        if _is_missing_marker(value):
            if not getattr(step, "keep_empty_features", False):
                raise ExportError(f"step {where}: feature '{col.feature}' was all-missing at fit and is dropped")
            value = 0.0
        kept.append(_impute(col, value.item() if hasattr(value, "item") else value, where))
    return kept


def _scaler(step: Any, cols: list[Col], where: str) -> list[Col]:
    """Each scaler with scikit-learn's own operations (``transform`` of 1.5+): ``(x - m) / d``
    for StandardScaler, RobustScaler and MaxAbsScaler, ``x * s + b`` for MinMaxScaler."""
    n = len(cols)
    if isinstance(step, MinMaxScaler):
        s = _per_column(step.scale_, n)
        if np.any(s == 0):
            raise ExportError(f"step {where}: a zero scale cannot be expressed")
        b = _per_column(step.min_, n)
        out = [
            _affine(c, lambda ch, si=float(si), bi=float(bi): ch.then_scale_shift(si, bi), si == 1 and bi == 0, where)
            for c, si, bi in zip(cols, s, b)
        ]
        bounds = step.feature_range if step.clip else None
    else:
        if isinstance(step, StandardScaler):
            m = _per_column(step.mean_, n) if step.mean_ is not None and step.with_mean else np.zeros(n)
            d = _per_column(step.scale_, n) if step.scale_ is not None and step.with_std else np.ones(n)
        elif isinstance(step, RobustScaler):
            m = _per_column(step.center_, n) if step.with_centering else np.zeros(n)
            d = _per_column(step.scale_, n) if step.with_scaling else np.ones(n)
        else:  # MaxAbsScaler
            m, d = np.zeros(n), _per_column(step.scale_, n)
        out = [
            _affine(c, lambda ch, mi=float(mi), di=float(di): ch.then_divide(mi, di), mi == 0 and di == 1, where)
            for c, mi, di in zip(cols, m, d)
        ]
        bounds = (-1.0, 1.0) if isinstance(step, MaxAbsScaler) and getattr(step, "clip", False) else None
    if bounds is not None:
        out = [_clip(c, bounds[0], bounds[1], where) for c in out]
    return out


def _function(step: FunctionTransformer, cols: list[Col], where: str) -> list[Col]:
    if step.func is None:
        return cols
    if step.func is not np.clip:
        raise ExportError(
            f"step {where} is not supported: only FunctionTransformer(np.clip, kw_args=...) or the"
            f" identity can be folded, not {getattr(step.func, '__name__', step.func)!r}"
        )
    kw = dict(step.kw_args or {})
    a = kw.pop("a_min", kw.pop("min", None))
    b = kw.pop("a_max", kw.pop("max", None))
    if kw or (a is None and b is None):
        raise ExportError(f"step {where}: np.clip needs only a_min/a_max (or min/max) kw_args, got {step.kw_args}")
    n = len(cols)
    lo = _per_column(-INF if a is None else a, n)
    hi = _per_column(INF if b is None else b, n)
    return [_clip(c, l, h, where) for c, l, h in zip(cols, lo, hi)]


def _onehot(step: OneHotEncoder, cols: list[Col], where: str) -> list[Col]:
    infrequent = getattr(step, "infrequent_categories_", None)
    if infrequent is not None and any(x is not None and len(x) for x in infrequent):
        raise ExportError(f"step {where} is not supported: it has infrequent categories, which the core cannot group")
    drops = step.drop_idx_ if step.drop_idx_ is not None else [None] * len(cols)
    unknown = "error" if step.handle_unknown == "error" else "ignore"
    out: list[Col] = []
    for col, cats, drop in zip(cols, step.categories_, drops):
        spec = CategoricalSpec(
            categories=_category_table(cats, col, where),
            encoding="onehot",
            drop=None if drop is None else int(drop),
            unknown=unknown,
        )
        out += _encode(col, spec, where)
    return out


def _ordinal(step: OrdinalEncoder, cols: list[Col], where: str) -> list[Col]:
    infrequent = getattr(step, "infrequent_categories_", None)
    if infrequent is not None and any(x is not None and len(x) for x in infrequent):
        raise ExportError(f"step {where} is not supported: it has infrequent categories, which the core cannot group")
    use_value = step.handle_unknown == "use_encoded_value"
    out: list[Col] = []
    for col, cats in zip(cols, step.categories_):
        table = _category_table(cats, col, where)
        if "" in table and not _missing_is_its_index(step, table):
            if not (use_value and _same_code(step.encoded_missing_value, step.unknown_value) and table[-1] == ""):
                raise ExportError(
                    f"step {where}: feature '{col.feature}' encodes missing values as {step.encoded_missing_value}"
                    f" and unknown ones as {step.unknown_value if use_value else 'an error'}; the core can"
                    " only give both the same code; impute the column before the encoder"
                )
            table = table[:-1]  # missing (sent as "") becomes unknown, which has the same code
        spec = CategoricalSpec(
            categories=table,
            encoding="ordinal",
            unknown="ignore" if use_value else "error",
            unknown_value=float(step.unknown_value) if use_value else math.nan,
        )
        out += _encode(col, spec, where)
    return out


def _missing_is_its_index(step: OrdinalEncoder, table: tuple[str, ...]) -> bool:
    code = step.encoded_missing_value
    return not _is_missing_marker(code) and int(code) == table.index("")


def _same_code(a: Any, b: Any) -> bool:
    return (_is_missing_marker(a) and _is_missing_marker(b)) or (
        not _is_missing_marker(a) and not _is_missing_marker(b) and float(a) == float(b)
    )


def _category_table(cats: Sequence[Any], col: Col, where: str) -> tuple[str, ...]:
    table = tuple(category_str(c) for c in cats)
    if len(set(table)) != len(table):
        raise ExportError(f"step {where}: categories of '{col.feature}' collide as strings: {list(cats)}")
    return table


def _kbins(step: KBinsDiscretizer, cols: list[Col], where: str) -> list[Col]:
    """KBinsDiscretizer.transform is ``searchsorted(bin_edges_[j][1:-1], x, side='right')`` then
    one-hot over ``n_bins_[j]``: the interior edges of the fitted (deduplicated) bins are all the
    core needs. Its validation rejects NaN, as the served feature does without an imputer."""
    if step.encode not in ("onehot", "onehot-dense"):
        raise ExportError(
            f"step {where} is not supported: encode={step.encode!r}; the serving core writes the one-hot of the"
            " bin (encode='onehot' or 'onehot-dense')"
        )
    if step.dtype is not None and np.dtype(step.dtype) != np.float64:
        raise ExportError(f"step {where} is not supported: dtype={step.dtype!r} bins rounded values; use the default")
    out: list[Col] = []
    for col, edges, n_bins in zip(cols, step.bin_edges_, step.n_bins_):
        chain = _to_chain(col, where)
        interior = tuple(float(e) for e in np.asarray(edges, dtype=np.float64)[1:-1])
        if int(n_bins) != len(interior) + 1:
            raise ExportError(f"step {where}: feature '{col.feature}' has {n_bins} bins but {len(edges)} edges")
        out += [Bin(col.feature, chain, interior, i) for i in range(len(interior) + 1)]
    return out


def _joiner(step: CartesianJoiner, cols: list[Col], where: str) -> list[Col]:
    """Two raw categorical columns -> one "a|b" column, which the core derives from the raw
    values the client sends (missing as "", as the joiner writes a missing part)."""
    if len(cols) != 2:
        raise ExportError(f"step {where}: joins {len(cols)} columns; the serving core crosses exactly two")
    for col in cols:
        if not isinstance(col, Raw) or col.impute is not None:
            raise ExportError(
                f"step {where}: crosses '{col.feature}' after it was transformed or imputed; the serving core"
                " crosses the raw values the client sends"
            )
    a, b = cols[0].feature, cols[1].feature
    return [Joined(f"{a}_x_{b}", (a, b), "|")]


def _text_cleaner(step: TextCleaner, cols: list[Col], where: str) -> list[Col]:
    if len(cols) != 1 or not isinstance(cols[0], Raw) or cols[0].impute is not None:
        raise ExportError(f"step {where}: expects one raw text column")
    return [CleanText(cols[0].feature, bool(step.lowercase), bool(step.no_punct))]


def _vectorizer(step: Any, cols: list[Col], where: str) -> list[Col]:
    if len(cols) != 1 or not isinstance(cols[0], (Raw, CleanText)):
        raise ExportError(f"step {where}: a vectorizer must read one raw (or TextCleaner'd) text column")
    col = cols[0]
    if isinstance(col, Raw) and col.impute is not None:
        raise ExportError(f"step {where}: the text column '{col.feature}' was imputed; missing text is served as ''")
    clean = col if isinstance(col, CleanText) else CleanText(col.feature, False, False)
    part = text_part(step, col.feature, clean.lowercase, clean.no_punct, where)
    return [Txt(col.feature, part, i) for i in range(part.width)]


def _selector(step: SelectorMixin, cols: list[Col], where: str) -> list[Col]:
    return [c for c, keep in zip(cols, step.get_support()) if keep]


def _column_transformer(ct: ColumnTransformer, cols: list[Col], path: str) -> list[Col]:
    where = f"'{path}' (ColumnTransformer)"
    index_of = getattr(ct, "_transformer_to_input_indices", None)
    if index_of is None:
        raise ExportError(f"step {where}: this scikit-learn version does not expose the fitted column selections")
    weights = ct.transformer_weights or {}
    used: dict[int, str] = {}
    out: list[Col] = []
    for name, trans, _ in ct.transformers_:
        idx = list(index_of.get(name, []))
        if isinstance(trans, str) and trans == "drop" or not idx:
            continue
        sub = apply_step(trans, [cols[i] for i in idx], f"{path}__{name}")
        if sub and all(isinstance(c, (Joined, Crossed)) for c in sub):
            idx = []  # a cross reads the raw values; the inputs keep their own normalization
        for i in idx:
            if i in used:
                raise ExportError(
                    f"step {where}: feature '{cols[i].feature}' is used by both transformers '{used[i]}' and"
                    f" '{name}'; the serving core gives each input feature one normalization"
                )
            used[i] = name
        w = weights.get(name)
        if w is not None and w != 1:
            sub = [
                _affine(c, lambda ch, w=float(w): ch.then_scale_shift(w, 0.0), False, f"{where} weight of '{name}'")
                for c in sub
            ]
        out += sub
    return out


def _pipeline(pipe: Pipeline, cols: list[Col], path: str) -> list[Col]:
    for name, step in pipe.steps:
        cols = apply_step(step, cols, f"{path}__{name}")
    return cols


_SCALERS = (StandardScaler, MinMaxScaler, RobustScaler, MaxAbsScaler)


def apply_step(step: Any, cols: list[Col], path: str) -> list[Col]:
    """Fold one fitted step into the column states; ``path`` names it (``outer__inner``)."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return cols
    described = f"'{path}' ({type(step).__name__})"
    if isinstance(step, Pipeline):
        return _pipeline(step, cols, path)
    if isinstance(step, ColumnTransformer):
        _check_width(step, cols, described)
        return _column_transformer(step, cols, path)
    handlers: list[tuple[type, Callable[..., list[Col]]]] = [
        (SimpleImputer, _imputer),
        (_SCALERS, _scaler),
        (FunctionTransformer, _function),
        (OneHotEncoder, _onehot),
        (OrdinalEncoder, _ordinal),
        (SelectorMixin, _selector),
        (KBinsDiscretizer, _kbins),
        (CartesianJoiner, _joiner),
        (TextCleaner, _text_cleaner),
        (VECTORIZERS, _vectorizer),
    ]
    for kinds, handler in handlers:
        if isinstance(step, kinds):
            _check_width(step, cols, described)
            return handler(step, cols, described)
    raise ExportError(
        f"step {described} is not supported: the serving core runs only imputers, affine scalers,"
        " clipping, quantile bins, one-hot/ordinal encoders and crosses of two categorical columns;"
        " train without it or move it into the estimator"
    )


# ---- the whole pipeline ------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    estimator: BaseEstimator  # the final estimator, to convert to ONNX alone
    features: tuple[FeatureSpec, ...]  # in client order
    input_width: int  # columns the core writes
    steps: tuple[dict[str, str], ...]  # the preprocessing steps folded, for lineage
    crosses: tuple[CrossSpec, ...] = ()  # derived features, computed from two of ``features``
    texts: tuple[TextPart, ...] = ()  # vectorizers that run in the ONNX graph, in concat order
    # estimator column k = column order[k] of concat(core matrix, texts[0], texts[1], ...)
    order: tuple[int, ...] = ()

    @property
    def estimator_width(self) -> int:
        return self.input_width + sum(t.width for t in self.texts)


def flatten(estimator: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(name, step) pairs of a possibly nested Pipeline; the last one is the estimator."""
    if not isinstance(estimator, Pipeline):
        return [(prefix or type(estimator).__name__, estimator)]
    out: list[tuple[str, Any]] = []
    for name, step in estimator.steps:
        out += flatten(step, f"{prefix}__{name}" if prefix else name) if isinstance(step, Pipeline) else [
            (f"{prefix}__{name}" if prefix else name, step)
        ]
    return out


def split_pipeline(
    estimator: Any,
    input_names: Sequence[str],
    client_order: Sequence[str],
    is_numeric: Callable[[str], bool],
    estimator_allows_nan: Callable[[Any], bool],
) -> Split:
    """Fold the preprocessing of ``estimator`` into FeatureSpecs.

    ``input_names``: the pipeline's input columns in its own order; ``client_order``: the same
    names in the order the client sends them (the sample's); ``is_numeric(name)`` says whether
    the sample column is numbers (else strings).
    """
    steps = flatten(estimator)
    final_name, final = steps[-1]
    if final is None or isinstance(final, str):
        raise ExportError(f"the last step '{final_name}' is {final!r}, not an estimator")
    cols: list[Col] = [Raw(n) for n in input_names]
    for name, step in steps[:-1]:
        cols = apply_step(step, cols, name)
    n_in = getattr(final, "n_features_in_", None)
    if n_in is not None and n_in != len(cols):
        raise ExportError(
            f"estimator '{final_name}' ({type(final).__name__}) takes {n_in} columns but the folded"
            f" preprocessing produces {len(cols)}"
        )
    allow_nan = estimator_allows_nan(final)
    texts, order, core_cols = _text_layout(cols)
    specs, crosses = _features(core_cols, is_numeric, allow_nan)
    specs += [
        FeatureSpec(
            name=t.feature, type="text", column=0, text=TextSpec(input_name=t.input_name, lowercase=t.lowercase)
        )
        for t in texts
    ]
    rank = {n: i for i, n in enumerate(client_order)}
    ordered = tuple(sorted(specs, key=lambda f: rank[f.name]))
    folded = tuple(
        {"name": n, "class": f"{type(s).__module__}.{type(s).__name__}"}
        for n, s in steps[:-1]
        if s is not None and not isinstance(s, str)
    )
    return Split(
        estimator=final,
        features=ordered,
        input_width=len(core_cols),
        steps=folded,
        texts=texts,
        order=order,
        crosses=crosses,
    )


def _text_layout(cols: list[Col]) -> tuple[tuple[TextPart, ...], tuple[int, ...], list[Col]]:
    """Separate the vectorizers' columns (computed in the graph) from the core's, and say where
    each estimator column comes from in ``concat(core, text parts...)``."""
    core = [c for c in cols if not isinstance(c, Txt)]
    parts: list[TextPart] = []
    for c in cols:
        if isinstance(c, Txt) and c.part not in parts:
            if any(p.feature == c.feature for p in parts):
                raise ExportError(f"text feature '{c.feature}' reaches the estimator through two vectorizers")
            parts.append(c.part)
    if not parts:
        return (), (), core
    names = [p.input_name for p in parts]
    if len(set(names)) != len(names):
        raise ExportError(f"text features {[p.feature for p in parts]} map to clashing ONNX input names {names}")
    start = {id(p): len(core) + sum(q.width for q in parts[:i]) for i, p in enumerate(parts)}
    order: list[int] = []
    k = 0
    for c in cols:
        if isinstance(c, Txt):
            order.append(start[id(c.part)] + c.index)
        else:
            order.append(k)
            k += 1
    if sorted(order) != list(range(len(cols))):
        raise ExportError("the text vectorizers' columns do not reach the estimator complete (a selector after them?)")
    return tuple(parts), tuple(order), core


def _block(cols: list[Col], pos: int, width: int, what: str) -> None:
    """The ``width`` encoded columns starting at ``pos`` are one feature's, complete and in order."""
    col = cols[pos]
    block = cols[pos : pos + width]
    if [getattr(c, "index", None) for c in block] != list(range(width)) or any(
        c.feature != col.feature or type(c) is not type(col) for c in block
    ):
        raise ExportError(
            f"the {what} columns of feature '{col.feature}' do not reach the estimator complete and in"
            " order (was a selector or column transformer applied after the encoder?)"
        )


def _cross(col: Crossed, pos: int, is_numeric: Callable[[str], bool]) -> CrossSpec:
    for parent in col.inputs:
        if is_numeric(parent):
            raise ExportError(
                f"cartesian '{col.feature}': attribute '{parent}' is sent as a number (NUMERIC or BINARY); the"
                " serving core crosses category strings only: make it CATEGORICAL or remove the cartesian"
            )
    return CrossSpec(name=col.feature, inputs=col.inputs, column=pos, categorical=col.spec, separator=col.separator)


def _features(
    cols: list[Col], is_numeric: Callable[[str], bool], allow_nan: bool
) -> tuple[list[FeatureSpec], tuple[CrossSpec, ...]]:
    specs: list[FeatureSpec] = []
    crosses: list[CrossSpec] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(cols):
        col = cols[pos]
        if col.feature in seen:
            raise ExportError(
                f"feature '{col.feature}' reaches the estimator in more than one place; the serving core"
                " gives each input feature one normalization"
            )
        seen.add(col.feature)
        if isinstance(col, Crossed):
            _block(cols, pos, col.spec.width, "encoded")
            crosses.append(_cross(col, pos, is_numeric))
            pos += col.spec.width
            continue
        if isinstance(col, Joined):
            raise ExportError(f"cartesian '{col.feature}' reaches the estimator unencoded; one-hot encode it")
        if isinstance(col, Bin):
            _block(cols, pos, len(col.edges) + 1, "bin")
            numeric = col.chain.numeric(False, col.edges)
            specs.append(FeatureSpec(name=col.feature, type="numeric", column=pos, numeric=numeric))
            pos += len(col.edges) + 1
            continue
        if isinstance(col, Cat):
            width = col.spec.width
            block = cols[pos : pos + width]
            if [getattr(c, "index", None) for c in block] != list(range(width)) or any(
                c.feature != col.feature for c in block
            ):
                raise ExportError(
                    f"the encoded columns of feature '{col.feature}' do not reach the estimator complete and in"
                    " order (was a selector or column transformer applied after the encoder?)"
                )
            specs.append(FeatureSpec(name=col.feature, type="categorical", column=pos, categorical=col.spec))
            pos += width
            continue
        if isinstance(col, CleanText):
            raise ExportError(f"text feature '{col.feature}' reaches the estimator without a vectorizer")
        if isinstance(col, Raw) and not is_numeric(col.feature):
            raise ExportError(
                f"feature '{col.feature}' holds strings but reaches the estimator unencoded; add a"
                " OneHotEncoder or OrdinalEncoder for it"
            )
        chain = _to_chain(col, "final")
        numeric = chain.numeric(chain.impute is None and allow_nan)
        specs.append(FeatureSpec(name=col.feature, type="numeric", column=pos, numeric=numeric))
        pos += 1
    return specs + _cross_inputs(crosses, seen), tuple(crosses)


def _cross_inputs(crosses: list[CrossSpec], seen: set[str]) -> list[FeatureSpec]:
    """A parent the model does not use on its own is still a client input: it writes no column."""
    inputs: dict[str, FeatureSpec] = {}
    for x in crosses:
        for parent in x.inputs:
            if parent not in seen and parent not in inputs:
                spec = CategoricalSpec((), encoding="none", unknown="ignore")
                inputs[parent] = FeatureSpec(name=parent, type="categorical", column=0, categorical=spec)
    return list(inputs.values())
