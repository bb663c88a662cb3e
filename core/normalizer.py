"""Gather request rows into one batch matrix while normalizing them (the Python side).

Python validates and allocates here; the compiled kernels in ``_normalize.pyx`` assume valid
input and loop without the GIL. See ``FeatureNormalizer.gather``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class FeatureValueError(ValueError):
    """A feature value the model cannot take; names the feature and the row."""

    def __init__(self, feature: str, row: int, reason: str) -> None:
        super().__init__(f"feature '{feature}' row {row}: {reason}")
        self.feature = feature
        self.row = row
        self.reason = reason


@dataclass(frozen=True)
class RowBlock:
    """The rows of one request, in one of the two V2 request forms.

    ``matrix``: form A, one ``[n_rows, n_features]`` float32/float64 array, columns in manifest
    feature order (only for models whose features are all numeric).
    ``columns``: form B, one entry per manifest feature: a 1-D float32/float64 array of
    ``n_rows`` for numeric/binary features, a V2 BYTES buffer (bytes or memoryview) holding
    ``n_rows`` elements for categorical features.
    Exactly one of the two is set.
    """

    n_rows: int
    matrix: np.ndarray | None = None
    columns: Sequence[np.ndarray | bytes | memoryview] | None = None
