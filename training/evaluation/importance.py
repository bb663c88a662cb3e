"""Feature importance for the evaluation report: permutation importance through the served path,
or the estimator's own importances when it has them.

Permutation importance shuffles one raw feature at a time in a sample of rows and scores the
sample again with OnnxScorer; the importance is how much the metric gets worse (AUC for binary,
accuracy for multiclass, RMSE for regression), averaged over a few shuffles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from onyxserve.core.scorer import OnnxScorer


class Sampler:
    """A uniform random sample of up to ``rows`` rows kept while chunks stream by (per class,
    when stratified, up to ``rows // 2`` each so rare classes are seen); bounded memory."""

    def __init__(self, rows: int, *, stratify: bool, seed: int = 0) -> None:
        self.cap = max(rows // 2, 1) if stratify else max(rows, 1)
        self.stratify = stratify
        self.rng = np.random.default_rng(seed)
        self.frames: list[pd.DataFrame] = []
        self.kept: pd.DataFrame | None = None

    def __len__(self) -> int:
        return 0 if self.kept is None else len(self.kept)

    def add(self, chunk: Any, y: np.ndarray) -> None:
        u = self.rng.random(chunk.n_rows)
        strata = pd.Series(y).astype(str).to_numpy() if self.stratify else np.zeros(len(y), dtype=object)
        # only rows that could enter the sample are converted
        if self.kept is not None:
            bound = self.kept.groupby("_stratum")["_u"].max()
            full = self.kept.groupby("_stratum").size() >= self.cap
            limit = pd.Series(strata).map(bound.where(full)).fillna(np.inf).to_numpy()
            candidates = np.flatnonzero(u < limit)
        else:
            candidates = np.arange(chunk.n_rows)
        if len(candidates) == 0:
            return
        if chunk.batch is not None:
            part = chunk.batch.take(candidates).to_pandas()
        else:
            part = chunk.frame.iloc[candidates].reset_index(drop=True)
        part["_y"] = y[candidates]
        part["_u"] = u[candidates]
        part["_stratum"] = strata[candidates]
        merged = part if self.kept is None else pd.concat([self.kept, part], ignore_index=True)
        self.kept = (
            merged.sort_values("_u").groupby("_stratum", sort=False).head(self.cap).reset_index(drop=True)
        )

    def result(self) -> tuple[pd.DataFrame, np.ndarray]:
        kept = self.kept.sort_values("_u").reset_index(drop=True)
        return kept.drop(columns=["_y", "_u", "_stratum"]), kept["_y"].to_numpy()


def _metric(task: str, y: np.ndarray, scores: dict[str, np.ndarray], labels: Any) -> float:
    """Higher is better: AUC (binary), accuracy (multiclass), -RMSE (regression)."""
    from onyxserve.training.evaluation.metrics import label_indices
    from sklearn import metrics as skm

    if task == "regression":
        return -float(skm.root_mean_squared_error(y.astype(float), scores["value"]))
    yi = label_indices(y, labels)
    if task == "binary" and len(np.unique(yi)) == 2:
        return float(skm.roc_auc_score(yi, scores["probabilities"][:, 1]))
    return float(skm.accuracy_score(yi, scores["probabilities"].argmax(axis=1)))


def importances(
    scorer: OnnxScorer, frame: pd.DataFrame, y: np.ndarray, result: Any, *, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    from onyxserve.training.export.parity import row_block

    manifest = scorer.manifest
    rng = np.random.default_rng(seed)

    def score(f: pd.DataFrame) -> float:
        return _metric(manifest.task, y, scorer.score([row_block(manifest, f)]), manifest.labels)

    reference = score(frame)
    values, spread = [], []
    for name in manifest.feature_names:
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[name] = frame[name].to_numpy()[rng.permutation(len(frame))]
            drops.append(reference - score(shuffled))
        values.append(float(np.mean(drops)))
        spread.append(float(np.std(drops)))
    metric = {"binary": "AUC", "multiclass": "accuracy", "regression": "RMSE"}[manifest.task]
    if manifest.task == "binary" and len(np.unique(y.astype(str))) < 2:
        metric = "accuracy"
    return {
        "kind": f"permutation ({metric} lost when the feature is shuffled; {len(frame):,} sampled rows,"
        f" {repeats} shuffles)",
        "features": list(manifest.feature_names),
        "values": values,
        "std": spread,
    }


def native(estimator: Any) -> dict[str, Any] | None:
    """The final estimator's ``feature_importances_`` or mean |``coef_``|, named by the columns
    it sees (after preprocessing), or None if it has neither."""
    final, front = estimator, None
    if hasattr(estimator, "steps"):
        final, front = estimator.steps[-1][1], estimator[:-1]
    if hasattr(final, "feature_importances_"):
        values, kind = np.asarray(final.feature_importances_, dtype=float), "model (feature_importances_)"
    elif hasattr(final, "coef_"):
        coef = np.atleast_2d(np.asarray(final.coef_, dtype=float))
        values, kind = np.abs(coef).mean(axis=0), "model (|coefficient| on the model's inputs)"
    else:
        return None
    names = None
    if front is not None:
        try:
            names = [str(n) for n in front.get_feature_names_out()]
        except Exception:  # noqa: BLE001 - not every transformer names its outputs
            names = None
    if names is None and hasattr(final, "feature_names_in_"):
        names = [str(n) for n in final.feature_names_in_]
    if names is None or len(names) != len(values):
        names = [f"x{i}" for i in range(len(values))]
    return {"kind": kind, "features": names, "values": values.tolist(), "std": None}
