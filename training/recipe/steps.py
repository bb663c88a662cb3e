"""Fitted transformers that recipes use, shaped so that the export can fold what it can serve.

- ``OutlierClipper`` *is* a ``FunctionTransformer(np.clip, kw_args={"a_min": lo, "a_max": hi})``
  once fitted: the bounds it learns (quantiles or Tukey fences) are written into ``kw_args``,
  which is exactly what ``sklearn_split`` folds into the compiled core's clip bounds.
- ``FrequentOneHotEncoder`` *is* a ``OneHotEncoder`` with an explicit category list and
  ``handle_unknown='ignore'``: categories seen fewer than ``min_count`` times (or beyond the
  ``max_categories`` most frequent) are left out of the list, so rare values -- and values never
  seen in training -- share one bucket, the all-zero row. That bucket is the ``__rare__``
  category (a one-hot column for it would be redundant with the zero row); the core serves it as
  "unknown -> ignore", so the folding is reproduced exactly without infrequent-category support.
- ``CartesianJoiner`` (two categoricals -> one "a|b" category, a missing part as "") is folded
  by the export into a manifest cross: the core joins the raw values the client sends the same
  way and one-hot encodes the key with the encoder after it (unknown -> the ``__rare__`` row).
- ``TextCleaner`` (missing -> "", optional lowercase / punctuation removal) runs in training
  only: the export refuses it, because the core has no text features.
"""

from __future__ import annotations

import re
import string
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

RARE = "__rare__"  # the name of the folded bucket, for documentation and reports
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


class OutlierClipper(FunctionTransformer):
    """Clip each column to bounds learned at fit: ``quantile`` [q(low), q(high)] or ``iqr``
    [Q1 - k*IQR, Q3 + k*IQR]. Missing values are ignored when fitting and stay missing."""

    def __init__(
        self, method: str = "quantile", low: float = 0.01, high: float = 0.99, k: float = 1.5
    ) -> None:
        super().__init__(func=np.clip, feature_names_out="one-to-one")
        self.method, self.low, self.high, self.k = method, low, high, k

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        values = np.asarray(X, dtype=np.float64)
        values = values.reshape(len(values), -1)
        with np.errstate(all="ignore"):
            if self.method == "iqr":
                q1, q3 = np.nanquantile(values, [0.25, 0.75], axis=0)
                lo, hi = q1 - self.k * (q3 - q1), q3 + self.k * (q3 - q1)
            else:
                lo, hi = np.nanquantile(values, [self.low, self.high], axis=0)
        lo = np.where(np.isnan(lo), -np.inf, lo)  # an all-missing column: no bounds
        hi = np.where(np.isnan(hi), np.inf, hi)
        self.bounds_ = (lo, hi)
        self.kw_args = {"a_min": lo, "a_max": hi}  # what FunctionTransformer applies and export folds
        return super().fit(X, y)


class FrequentOneHotEncoder(OneHotEncoder):
    """One-hot over the frequent categories only; the rest fold into the all-zero ``__rare__`` row.

    ``min_count``: a category needs at least this many rows (a float in (0, 1) is a fraction of
    the rows); ``max_categories``: keep at most this many of the most frequent ones. Missing
    values are never a category here: impute them first to give them one.
    """

    def __init__(self, min_count: float = 1, max_categories: int | None = None) -> None:
        super().__init__(handle_unknown="ignore", sparse_output=False)
        self.min_count, self.max_categories = min_count, max_categories

    def fit(self, X: Any, y: Any = None) -> FrequentOneHotEncoder:
        frame = pd.DataFrame(np.asarray(X, dtype=object).reshape(len(X), -1))
        threshold = self.min_count * len(frame) if 0 < self.min_count < 1 else self.min_count
        self.categories = []
        self.rare_categories_ = []
        for column in frame.values.T:
            counts = pd.Series(column).dropna().astype(str).value_counts()
            counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            kept = counts[counts >= threshold]
            if self.max_categories is not None:
                kept = kept.iloc[: self.max_categories]
            self.categories.append(np.array(sorted(kept.index), dtype=object))
            self.rare_categories_.append(sorted(set(counts.index) - set(kept.index)))
        return super().fit(_as_str(X), y)

    def transform(self, X: Any) -> Any:
        return super().transform(_as_str(X))


def _as_str(X: Any) -> np.ndarray:
    """Object columns with every present value as ``str`` (missing stays NaN -> unknown)."""
    arr = np.asarray(X, dtype=object).reshape(len(X), -1).copy()
    missing = pd.isna(arr)
    arr[~missing] = [str(v) for v in arr[~missing]]
    arr[missing] = np.nan
    return arr


class TextCleaner(TransformerMixin, BaseEstimator):
    """One text column -> a list of strings for a vectorizer (missing -> "")."""

    def __init__(self, lowercase: bool = True, no_punct: bool = True) -> None:
        self.lowercase, self.no_punct = lowercase, no_punct

    def fit(self, X: Any, y: Any = None) -> TextCleaner:
        return self

    def transform(self, X: Any) -> list[str]:
        out = []
        for v in np.asarray(X, dtype=object).reshape(-1):
            s = text_str(v)
            if self.lowercase:
                s = s.lower()
            if self.no_punct:
                s = _PUNCT.sub(" ", s)
            out.append(s)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else ["text"], dtype=object)


def text_str(value: Any) -> str:
    """A text value as a client sends it: missing (None/NaN) is the empty string."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


class CartesianJoiner(TransformerMixin, BaseEstimator):
    """Two categorical columns -> one column of "a|b" (missing parts as "")."""

    def fit(self, X: Any, y: Any = None) -> CartesianJoiner:
        return self

    def transform(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=object).reshape(len(X), -1)
        joined = ["|".join("" if pd.isna(v) else str(v) for v in row) for row in arr]
        return np.array(joined, dtype=object).reshape(-1, 1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = list(input_features) if input_features is not None else ["a", "b"]
        return np.array(["_x_".join(map(str, names))], dtype=object)
