"""Why the parity gate refused a row: the split threshold the row's value sits on.

The served matrix and scikit-learn's transformed row are compared column by column against the
estimator's split thresholds, the way each side compares: ``float32(x) <= t`` for DecisionTree,
forests and GradientBoosting, ``x <= t`` in float64 for HistGradientBoosting (``trees``). A
threshold the two values fall on different sides of is where the two paths diverge; the message
names its feature, the row's raw value and the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from onyxserve.core.scorer import OnnxScorer
from onyxserve.repository.manifest import Manifest
from onyxserve.training.export.fold import flatten
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.trees import input_dtype, is_hist_gradient_boosting

Explain = Callable[[int], str | None]


def split_thresholds(estimator: Any) -> list[tuple[int, float]]:
    """(column, float64 threshold) of every split of a tree model; [] for other estimators."""
    if is_hist_gradient_boosting(estimator):
        nodes = [p.nodes for it in estimator._predictors for p in it]
        return [(int(n["feature_idx"]), float(n["num_threshold"])) for ns in nodes for n in ns if not n["is_leaf"]]
    estimators = getattr(estimator, "estimators_", None)
    trees = [estimator.tree_] if hasattr(estimator, "tree_") else [
        e.tree_ for e in np.asarray(estimators if estimators is not None else [], dtype=object).ravel()
        if hasattr(e, "tree_")
    ]
    return [(int(f), float(t)) for tree in trees for f, t in zip(tree.feature, tree.threshold) if f >= 0]


def split_explainer(
    pipeline: Any, pipeline_input: Callable[[pd.DataFrame], Any], scorer: OnnxScorer, frame: pd.DataFrame,
    order: tuple[int, ...] = (),
) -> Explain:
    """``explain(row)``: the sentence naming the threshold row ``row`` of ``frame`` sits on, or
    None. ``pipeline_input``: the frame as the pipeline takes it; ``order``: the estimator
    column -> served column map of a model with text features (``Split.order``)."""
    steps = flatten(pipeline)
    estimator = steps[-1][1]
    thresholds = split_thresholds(estimator)
    manifest = scorer.manifest

    def explain(row: int) -> str | None:
        if not thresholds:
            return None
        rows = frame.iloc[[row]]
        x = pipeline_input(rows)
        for _, step in steps[:-1]:
            if step is not None and not isinstance(step, str):
                x = step.transform(x)
        theirs = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64).reshape(-1)
        ours = scorer.normalizer.gather([row_block(manifest, rows)]).astype(np.float64).reshape(-1)
        return _diverging(manifest, estimator, thresholds, theirs, ours, rows, order)

    return explain


def _diverging(
    manifest: Manifest, estimator: Any, thresholds: list[tuple[int, float]], theirs: np.ndarray,
    ours: np.ndarray, rows: pd.DataFrame, order: tuple[int, ...],
) -> str | None:
    double = input_dtype(estimator) == "float64"
    sk = theirs if double else theirs.astype(np.float32).astype(np.float64)  # what each side compares
    served_column = {k: c for k, c in enumerate(order)} if order else None
    features = {f.column: f for f in manifest.features if f.numeric is not None and f.numeric.bins is None}
    for column, t in sorted(thresholds, key=lambda ct: abs(sk[ct[0]] - ct[1])):
        c = served_column[column] if served_column is not None else column
        feature = features.get(c)
        if feature is None or c >= len(ours) or np.isnan(sk[column]) or np.isnan(ours[c]):
            continue
        if (sk[column] <= t) != (ours[c] <= t):
            test = "x" if double else "float32(x)"
            return (
                f"feature '{feature.name}' = {float(rows.iloc[0][feature.name])!r} sits on a split threshold:"
                f" normalized it is {float(ours[c])!r} served and {float(theirs[column])!r} in scikit-learn, which"
                f" tests {test} <= {t!r}; the two take different branches"
            )
    return None
