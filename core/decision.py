"""The label a binary model answers with at a score threshold.

The ONNX graph's ``label`` is scikit-learn's ``predict`` (the most probable class, i.e. a 0.5
threshold). An ML engineer picks another operating point at evaluation (``precision >= 0.9``,
``FPR <= 1 %``) and records it in the registry; the server and batch prediction then answer
with the positive class -- ``labels[-1]``, the last probability column, as ``evaluate`` defines
it -- iff its probability is ``>= threshold``. Probabilities are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def thresholded_labels(
    probabilities: np.ndarray, onnx_labels: np.ndarray, labels: Sequence[Any], threshold: float
) -> np.ndarray:
    """Labels ``[N]`` in the ONNX label output's dtype (int64 or str objects)."""
    choices = np.array([labels[0], labels[-1]], dtype=onnx_labels.dtype)
    return choices[(probabilities[:, -1] >= threshold).astype(np.intp)]


def check_threshold(value: Any, where: str) -> float:
    """A threshold is a probability: a number in [0, 1]; ValueError names ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{where}: a threshold must be a number between 0 and 1, got {value!r}")
    return float(value)
