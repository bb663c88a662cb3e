"""When the parity gate refuses, it names the feature, the row's value and the split threshold
the value sits on (where scikit-learn's path and the served one part)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from onyxserve.core.scorer import OnnxScorer
from onyxserve.training.errors import ExportError
from onyxserve.training.export.explain import split_explainer
from onyxserve.training.export.parity import check_parity
from onyxserve.training.export.writer import _predictor, export_model
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor


@pytest.mark.parametrize("estimator", [DecisionTreeRegressor(max_depth=3, random_state=0),
                                       HistGradientBoostingRegressor(max_iter=3, max_depth=2)])
def test_refusal_names_feature_value_and_threshold(tmp_path, estimator):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"noise": rng.normal(size=400), "x": np.round(rng.normal(15, 2, 400), 1)})
    pipeline = make_pipeline(StandardScaler(), estimator).fit(frame, (frame["x"] > 15.05) * 100.0)
    result = export_model(pipeline, name="m", repository=tmp_path, sample=frame, register=False)
    model = pipeline[-1]
    scaler = pipeline[0]
    t = model.tree_.threshold[0] if hasattr(model, "tree_") else model._predictors[0][0].nodes[0]["num_threshold"]
    assert (model.tree_.feature[0] if hasattr(model, "tree_") else model._predictors[0][0].nodes[0]["feature_idx"]) == 1
    raw_t = t * scaler.scale_[1] + scaler.mean_[1]
    row = pd.DataFrame({"noise": [0.0], "x": [raw_t + 1e-4]})  # just right of the root split
    # a manifest whose offset is 1e-3 off sends the row left: what the gate must explain
    m = result.manifest
    x = m.features[1]
    broken = replace(m, features=(m.features[0], replace(x, numeric=replace(x.numeric, offset=x.numeric.offset + 1e-3))))
    scorer = OnnxScorer(broken, (result.path / "model.onnx").read_bytes(), intra_op_threads=1)
    predict = _predictor(pipeline, ["noise", "x"], classifier=False)
    explain = split_explainer(pipeline, lambda f: f[["noise", "x"]], scorer, row)
    with pytest.raises(ExportError) as err:
        check_parity("regression", scorer, row, predict, explain=explain)
    message = str(err.value)
    assert f"feature 'x' = {float(raw_t + 1e-4)!r} sits on a split threshold" in message
    test = "x" if hasattr(model, "_predictors") else "float32(x)"
    assert f"tests {test} <= {float(t)!r}; the two take different branches" in message


def test_no_explanation_for_models_without_splits(tmp_path):
    from sklearn.linear_model import Ridge

    frame = pd.DataFrame({"x": np.arange(50.0)})
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(frame, frame["x"])
    result = export_model(pipeline, name="m", repository=tmp_path, sample=frame, register=False)
    scorer = OnnxScorer(result.manifest, (result.path / "model.onnx").read_bytes(), intra_op_threads=1)
    assert split_explainer(pipeline, lambda f: f, scorer, frame)(3) is None
