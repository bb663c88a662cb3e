"""Export end to end: real fits, real skl2onnx, real onnxruntime, served through OnnxScorer."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.repository.manifest import Manifest
from onyxserve.repository.store import list_versions
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import DEFAULT_CONFIG, ExportError, export_model
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from tests.training.data import mixed_frame, targets

CLASSIFIERS = {
    "LogisticRegression": lambda: LogisticRegression(max_iter=500),
    "SGDClassifier-log_loss": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "SGDClassifier-modified_huber": lambda: SGDClassifier(loss="modified_huber", random_state=0),
    "DecisionTreeClassifier": lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
    "RandomForestClassifier": lambda: RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0),
    "ExtraTreesClassifier": lambda: ExtraTreesClassifier(n_estimators=8, max_depth=5, random_state=0),
    "GradientBoostingClassifier": lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
    "HistGradientBoostingClassifier": lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0),
    "MLPClassifier": lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0),
}
REGRESSORS = {
    "LinearRegression": LinearRegression,
    "Ridge": Ridge,
    "SGDRegressor": lambda: SGDRegressor(random_state=0),
    "DecisionTreeRegressor": lambda: DecisionTreeRegressor(max_depth=5, random_state=0),
    "RandomForestRegressor": lambda: RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0),
    "ExtraTreesRegressor": lambda: ExtraTreesRegressor(n_estimators=8, max_depth=5, random_state=0),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0),
    "HistGradientBoostingRegressor": lambda: HistGradientBoostingRegressor(max_iter=10, random_state=0),
    "MLPRegressor": lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=0),
}
MATRIX = [(name, task) for name in CLASSIFIERS for task in ("binary", "multiclass")] + [
    (name, "regression") for name in REGRESSORS
]
CLIENT_ORDER = ["visits", "color", "income", "age"]  # not the training order, on purpose


def preprocess() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ],
        remainder=StandardScaler(),  # visits
    )


def fit(estimator, task: str, seed: int = 0) -> Pipeline:
    frame = mixed_frame(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Pipeline([("pre", preprocess()), ("model", estimator)]).fit(frame, targets(frame, task))


def sample_frame() -> pd.DataFrame:
    frame = mixed_frame(n=120, seed=7)[CLIENT_ORDER]
    frame.loc[3, "color"] = "purple"  # unknown category: one-hot all zeros (handle_unknown='ignore')
    return frame


@pytest.mark.parametrize(("name", "task"), MATRIX, ids=[f"{n}-{t}" for n, t in MATRIX])
def test_parity_matrix(tmp_path, name, task):
    factory = CLASSIFIERS[name] if task != "regression" else REGRESSORS[name]
    pipeline = fit(factory(), task)
    sample = sample_frame()
    result = export_model(pipeline, name="m", repository=tmp_path, sample=sample, metrics={"auc": np.float64(0.9)})

    manifest = result.manifest
    assert manifest.task == task
    assert list(manifest.feature_names) == CLIENT_ORDER
    assert result.path == tmp_path / "m" / "1" and result.version == "1" == manifest.version
    assert Manifest.load(result.path / "manifest.json").to_json() == manifest.to_json()  # NaN != NaN in ==
    # an independent check, outside the parity module: load from disk the way the server does
    scorer = load_version(result.path, intra_op_threads=1)
    served = scorer.score([row_block(manifest, sample)])
    if task == "regression":
        assert manifest.labels is None and manifest.model.outputs == {"value": "variable"}
        expected = pipeline.predict(sample)
        scale = np.sqrt(np.mean(expected**2))
        np.testing.assert_allclose(served["value"], expected, rtol=0, atol=1e-5 * scale)
    else:
        assert list(manifest.labels) == pipeline.classes_.tolist()
        assert len(manifest.labels) == (2 if task == "binary" else 3)
        np.testing.assert_allclose(served["probabilities"], pipeline.predict_proba(sample), rtol=0, atol=1e-5)
        proba = pipeline.predict_proba(sample)
        top2 = np.sort(proba, axis=1)[:, -2:]
        decided = top2[:, 1] - top2[:, 0] > 2e-5
        assert (served["label"][decided] == pipeline.predict(sample)[decided]).all()
    assert result.parity.rows == len(sample) and result.parity.max_error < 1e-5 * max(1, np.abs(served.get("value", 1)).max())
    assert manifest.metrics == {"auc": 0.9}
    assert set(manifest.baseline["features"]) == set(CLIENT_ORDER)
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == DEFAULT_CONFIG


def test_manifest_contents(tmp_path):
    pipeline = fit(LogisticRegression(max_iter=500), "binary")
    sample = sample_frame()
    result = export_model(pipeline, name="fraud", repository=tmp_path, sample=sample, lineage={"run": "abc"})
    m = result.manifest
    age = m.features[CLIENT_ORDER.index("age")]
    scaler = pipeline.named_steps["pre"].named_transformers_["num"][-1]
    assert age.numeric.impute == pytest.approx(np.nanmedian(mixed_frame()["age"]))
    # StandardScaler's own operations, (x - mean_) / scale_, not the reciprocal folded in
    assert (age.numeric.offset, age.numeric.divisor, age.numeric.scale) == (scaler.mean_[0], scaler.scale_[0], 1.0)
    assert age.numeric.allow_nan is False
    color = m.features[CLIENT_ORDER.index("color")]
    assert color.categorical.categories == ("blue", "green", "red", "teal")
    assert color.categorical.unknown == "ignore" and color.column == 2 and color.width == 4
    assert [f.column for f in m.features] == [6, 2, 1, 0]  # visits is the remainder, last
    assert m.model.input_width == 7 and m.model.sha256 == __import__("hashlib").sha256(
        (result.path / "model.onnx").read_bytes()
    ).hexdigest()
    assert m.lineage["run"] == "abc"
    assert m.lineage["estimator"]["class"].endswith("LogisticRegression")
    assert m.lineage["versions"]["skl2onnx"]
    assert len(m.lineage["sample"]["sha256"]) == 64
    base = m.baseline["features"]
    assert base["age"]["missing_rate"] == pytest.approx(sample["age"].isna().mean())
    assert sum(base["income"]["counts"]) == len(sample) and len(base["income"]["edges"]) == 11
    assert base["color"]["unknown_rate"] == pytest.approx(1 / len(sample))
    assert set(m.baseline["predictions"]["label_frequencies"]) == {"0", "1"}


def test_bare_estimators_on_numpy_with_native_nan(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    X[rng.uniform(size=300) < 0.15, 1] = np.nan
    y = (np.nan_to_num(X[:, 1], nan=2.0) + X[:, 0] > 0.5).astype(int)
    assert np.isnan(X[:100, 1]).any()  # the parity gate sees NaN rows

    hgb = HistGradientBoostingClassifier(max_iter=10).fit(X, y)
    result = export_model(hgb, name="hgb", repository=tmp_path, sample=X[:100])
    assert result.manifest.feature_names == ("f0", "f1", "f2")
    assert all(f.numeric.allow_nan for f in result.manifest.features) and serving_warnings(result) == []

    # A tree routes NaN in a feature that had none at fit to its larger child; the ONNX tree
    # does not, so those features reject NaN at serving (probed), while f1 keeps it.
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    result = export_model(tree, name="tree", repository=tmp_path, sample=X[:100], feature_names=["a", "b", "c"])
    assert [f.numeric.allow_nan for f in result.manifest.features] == [False, True, False]
    assert len(serving_warnings(result)) == 1 and "2 feature(s) ('a', 'c')" in serving_warnings(result)[0]
    assert result.manifest.lineage["warnings"] == list(result.warnings)


def serving_warnings(result) -> list[str]:
    """The export's warnings less the one a small sample's drift baseline always gets."""
    return [w for w in result.warnings if not w.startswith("the drift baseline")]


def test_nan_mismatch_of_converter_refuses_and_writes_nothing(tmp_path):
    # skl2onnx does not reproduce RandomForest's native NaN routing (seen with skl2onnx 1.20)
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    X.loc[rng.uniform(size=300) < 0.2, "a"] = np.nan
    y = (X["a"].fillna(1.5) + X["b"] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X, y)
    with pytest.raises(ExportError, match=r"feature 'a'.*NaN.*exceeds tolerance"):
        export_model(forest, name="rf", repository=tmp_path, sample=X)
    assert list_versions(tmp_path / "rf") == []
    # the same forest with a NaN-free sample is exported, with NaN rejected at serving
    clean = X.dropna()
    result = export_model(forest, name="rf", repository=tmp_path, sample=clean)
    assert not any(f.numeric.allow_nan for f in result.manifest.features)
    assert any("'a'" in w for w in result.warnings)


def test_concurrent_exports_get_distinct_versions(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    pipeline = fit(Ridge(), "regression")
    sample = sample_frame()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: export_model(pipeline, name="p", repository=tmp_path, sample=sample), range(6)))
    assert sorted(int(r.version) for r in results) == [1, 2, 3, 4, 5, 6]
    assert list_versions(tmp_path / "p") == ["1", "2", "3", "4", "5", "6"]
    for v in list_versions(tmp_path / "p"):
        assert Manifest.load(tmp_path / "p" / v / "manifest.json").version == v
    assert not [p for p in (tmp_path / "p").iterdir() if p.name.startswith(".")]


def test_explicit_version_and_existing_config_kept(tmp_path):
    pipeline = fit(Ridge(), "regression")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text('{"max_batch_size": 0}')
    result = export_model(pipeline, name="p", repository=tmp_path, sample=sample_frame(), version="7")
    assert result.version == "7" and result.manifest.version == "7"
    assert (tmp_path / "p" / "config.json").read_text() == '{"max_batch_size": 0}'
    with pytest.raises(ExportError, match="already exists"):
        export_model(pipeline, name="p", repository=tmp_path, sample=sample_frame(), version="7")
    assert export_model(pipeline, name="p", repository=tmp_path, sample=sample_frame()).version == "8"


def test_median_on_a_tree_threshold_is_served_on_sklearns_side(tmp_path):
    """An even-count median of integers (24.5) is also the split threshold HistGradientBoosting
    learns between 24 and 25. The core computes scikit-learn's float64 scaling of it bit for bit
    and the graph compares in double, so it goes scikit-learn's way without being nudged (a
    float32 graph tied and went left: the export used to serve it one float32 step aside)."""
    from onyxserve.training.fit.train import export_trained, train_model

    from tests.training.fit.train_data import mixed_datasource

    ds = mixed_datasource(tmp_path, "binary")
    result = train_model(ds, algorithm="gradient_boosting", recipe={"features": {"note": "drop"}})
    exported = export_trained(result, name="hgb", repository=tmp_path / "repo")
    assert exported.manifest.model.input_dtype == "float64"
    assert not any("sits on a tree split threshold" in w for w in exported.warnings)
    rows = result.prepared.X_eval.head(20).copy()
    rows["count"] = np.nan
    scorer = load_version(exported.path)
    served = scorer.score([row_block(scorer.manifest, rows)])
    np.testing.assert_allclose(served["probabilities"], result.pipeline.predict_proba(rows), atol=1e-5)
