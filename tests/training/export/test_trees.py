"""Exported trees split where scikit-learn's do, on values sitting exactly on a threshold: float32
thresholds rounded down for the trees that compare float32(x) <= t, double trees (and a float64
core matrix) for HistGradientBoosting, which compares x <= t in float64."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pytest
from onyxserve.core.scorer import ModelLoadError, load_version
from onyxserve.repository.manifest import Manifest
from onyxserve.training.export.convert import convert_estimator
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.trees import round_down_thresholds
from onyxserve.training.export.writer import export_model
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier


def grid(n: int, seed: int, missing: float = 0.0) -> pd.DataFrame:
    """Measurements on a 0.1 grid: a holdout value is often the midpoint of two training values,
    i.e. exactly a split threshold (16.8 between 16.7 and 16.9)."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(15, 2, (n, 4)), 1)
    x[rng.random(x.shape) < missing] = np.nan
    return pd.DataFrame(x, columns=["a", "b", "c", "d"])


def target(frame: pd.DataFrame, task: str, seed: int = 0) -> np.ndarray:
    y = np.nan_to_num(frame.to_numpy(), nan=15.0) @ [30, 20, 10, 5] + np.random.default_rng(seed).normal(0, 10, len(frame))
    if task == "regression":
        return y
    cuts = np.quantile(y, [0.5] if task == "binary" else [0.33, 0.66])
    return np.digitize(y, cuts)


ESTIMATORS = [
    ("HistGradientBoostingRegressor", "regression", lambda: HistGradientBoostingRegressor(max_iter=40, min_samples_leaf=5)),
    ("HistGradientBoostingClassifier", "binary", lambda: HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=5)),
    ("HistGradientBoostingClassifier", "multiclass", lambda: HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=5)),
    ("GradientBoostingRegressor", "regression", lambda: GradientBoostingRegressor(n_estimators=30, random_state=0)),
    ("GradientBoostingClassifier", "multiclass", lambda: GradientBoostingClassifier(n_estimators=10, random_state=0)),
    ("RandomForestRegressor", "regression", lambda: RandomForestRegressor(20, max_depth=8, random_state=0)),
    ("ExtraTreesClassifier", "binary", lambda: ExtraTreesClassifier(20, max_depth=8, random_state=0)),
    ("DecisionTreeClassifier", "multiclass", lambda: DecisionTreeClassifier(random_state=0)),
]


@pytest.mark.parametrize(("name", "task", "factory"), ESTIMATORS, ids=[f"{n}-{t}" for n, t, _ in ESTIMATORS])
def test_grid_ties_served_as_sklearn(tmp_path, name, task, factory):
    train = grid(300, 0)
    pipeline = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), factory()).fit(train, target(train, task))
    result = export_model(pipeline, name="m", repository=tmp_path, sample=train.iloc[:100], register=False)
    assert result.manifest.model.input_dtype == ("float64" if name.startswith("Hist") else "float32")
    holdout = grid(5000, 1, missing=0.02)
    served = load_version(result.path).score([row_block(result.manifest, holdout)])
    if task == "regression":
        expected = pipeline.predict(holdout)
        np.testing.assert_allclose(served["value"], expected, rtol=0, atol=1e-5 * np.sqrt(np.mean(expected**2)))
    else:
        np.testing.assert_allclose(served["probabilities"], pipeline.predict_proba(holdout), rtol=0, atol=1e-5)


def test_thresholds_are_the_largest_float32_not_above_sklearns():
    train = grid(400, 3)
    forest = RandomForestRegressor(10, random_state=0).fit(train, target(train, "regression"))
    model = onnx.load_from_string(convert_estimator(forest, 4, classifier=False).onnx_bytes)
    assert round_down_thresholds(model, forest, "test") == 0  # idempotent on what export wrote
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    a = {x.name: x for x in node.attribute}
    thresholds = np.array(a["nodes_values"].floats, dtype=np.float32)
    branch = np.array([m == b"BRANCH_LEQ" for m in a["nodes_modes"].strings])
    t64 = np.array([forest.estimators_[t].tree_.threshold[n] for t, n in zip(a["nodes_treeids"].ints, a["nodes_nodeids"].ints)])
    t32 = thresholds[branch]
    assert (t32.astype(np.float64) <= t64[branch]).all()
    assert (np.nextafter(t32, np.float32(np.inf)).astype(np.float64) > t64[branch]).all()
    assert (t32 != t64[branch].astype(np.float32)).any()  # rounding to the nearest would differ
    # a threshold rounded up (to the nearest) is put back down
    up = int(np.flatnonzero(branch)[0])
    a["nodes_values"].floats[up] = float(np.nextafter(np.float32(t64[up]), np.float32(np.inf)))
    assert round_down_thresholds(model, forest, "test") == 1 and a["nodes_values"].floats[up] == t32[0]


def test_hist_gradient_boosting_graph_is_double_and_the_manifest_says_so(tmp_path):
    train = grid(300, 4)
    model = HistGradientBoostingClassifier(max_iter=5).fit(train, target(train, "multiclass"))
    result = export_model(model, name="m", repository=tmp_path, sample=train, register=False)
    graph = onnx.load(result.path / "model.onnx")
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    node = next(n for n in graph.graph.node if n.op_type == "TreeEnsembleClassifier")
    names = {a.name for a in node.attribute}
    assert {"nodes_values_as_tensor", "class_weights_as_tensor", "base_values_as_tensor"} <= names
    assert "nodes_values" not in names
    assert '"format": "onyxserve.manifest/2"' in (result.path / "manifest.json").read_text()
    # a manifest that claims float32 for a double graph does not load
    manifest = Manifest.load(result.path / "manifest.json")
    text = manifest.to_json().replace('"input_dtype": "float64"', '"input_dtype": "float32"')
    (result.path / "manifest.json").write_text(text)
    with pytest.raises(ModelLoadError, match="tensor\\(double\\), the manifest's input_dtype float32 needs tensor\\(float\\)"):
        load_version(result.path)
