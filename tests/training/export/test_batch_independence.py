"""A row's served scores do not depend on the batch it is in, so the server (batches of 1-32
rows, the server's threads) answers what batch prediction (65,536-row chunks) computes."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import export_model
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.training.export.test_trees import grid, target

MODELS = {
    "logistic": (lambda: LogisticRegression(max_iter=300), "multiclass"),  # LinearClassifier
    "ridge": (Ridge, "regression"),  # LinearRegressor
    "forest-classifier": (lambda: RandomForestClassifier(100, max_depth=6, random_state=0), "multiclass"),
    "forest-regressor": (lambda: RandomForestRegressor(100, max_depth=6, random_state=0), "regression"),
}


@pytest.mark.parametrize("name", MODELS)
def test_scores_equal_whatever_the_batch(tmp_path, name):
    factory, task = MODELS[name]
    train = grid(400, 0)
    pipeline = make_pipeline(StandardScaler(), factory()).fit(train, target(train, task))
    path = export_model(pipeline, name="m", repository=tmp_path, sample=train, register=False).path
    rows = grid(300, 1)
    offline = load_version(path, intra_op_threads=1)
    served = load_version(path, default_threads=2)  # what the server passes on two cores
    whole = offline.score([row_block(offline.manifest, rows)])
    for size in (1, 2, 7, 32):
        parts = [served.score([row_block(served.manifest, rows.iloc[i : i + size])]) for i in range(0, len(rows), size)]
        for key, value in whole.items():
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value, err_msg=f"{key}, batches of {size}")
    assert served.intra_op_threads == (1 if name.startswith("forest") else 2)
