"""Evaluation: metrics equal scikit-learn's, baselines, thresholds, the served path, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.repository.registry import Registry
from onyxserve.training.evaluation.metrics import EvaluationError, evaluate, evaluate_version, threshold_for
from onyxserve.training.evaluation.report import build_report, write_report
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import export_model
from onyxserve.training.synthetic import FEATURES, fraud_transactions
from sklearn import metrics as skm
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def binary_scores():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=3000) < 0.1).astype(int)
    s = np.clip(rng.normal(0.3 + 0.35 * y, 0.2), 0, 1)
    return y, s


def test_binary_metrics_equal_sklearn(binary_scores):
    y, s = binary_scores
    r = evaluate(y, s, "binary", labels=[0, 1], threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert r.metrics["auc"] == skm.roc_auc_score(y, s)
    assert r.metrics["average_precision"] == skm.average_precision_score(y, s)
    assert r.metrics["accuracy"] == skm.accuracy_score(y, pred)
    assert r.metrics["precision"] == skm.precision_score(y, pred)
    assert r.metrics["recall"] == skm.recall_score(y, pred)
    assert r.metrics["f1"] == skm.f1_score(y, pred)
    tn, fp, _, _ = skm.confusion_matrix(y, pred).ravel()
    assert r.metrics["false_positive_rate"] == fp / (fp + tn)
    assert r.confusion == skm.confusion_matrix(y, pred).tolist()
    assert r.baseline["auc"] == 0.5
    assert r.baseline["accuracy"] == skm.accuracy_score(y, np.zeros_like(y)) == 1 - y.mean()
    # [N, 2] probabilities and string labels give the same numbers
    r2 = evaluate(np.where(y == 1, "fraud", "ok"), np.c_[1 - s, s], "binary", labels=["ok", "fraud"])
    assert r2.metrics == r.metrics


def test_threshold_targets_and_with_threshold(binary_scores):
    y, s = binary_scores
    r = evaluate(y, s, "binary", labels=[0, 1], target="precision>=0.9")
    t = r.threshold
    assert r.metrics["precision"] >= 0.9 and r.threshold_target == "precision>=0.9"
    # the lowest such threshold: the next lower distinct score misses the target
    lower = s[s < t].max()
    assert skm.precision_score(y, s >= lower) < 0.9
    f = evaluate(y, s, "binary", labels=[0, 1], target="fpr<=1%")
    assert f.metrics["false_positive_rate"] <= 0.01
    assert ((s >= s[s < f.threshold].max()) & (y == 0)).sum() / (y == 0).sum() > 0.01
    rc = threshold_for(y, s, "recall>=0.8")
    assert skm.recall_score(y, s >= rc) >= 0.8 and skm.recall_score(y, s >= s[s > rc].min()) < 0.8
    moved = r.with_threshold(0.3)
    assert moved.threshold == 0.3 and moved.metrics["recall"] == skm.recall_score(y, s >= 0.3)
    assert r.threshold_for("fpr<=0.01") == f.threshold
    with pytest.raises(EvaluationError, match="no threshold meets precision>=1"):
        threshold_for(np.array([1, 0, 1]), np.array([0.5, 0.9, 0.1]), "precision>=1")
    with pytest.raises(EvaluationError, match="write e.g."):
        r.with_threshold(target="precision=0.9")


def test_multiclass_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    labels = ["a", "b", "c"]
    y = rng.choice(labels, 500, p=[0.6, 0.3, 0.1])
    proba = rng.dirichlet([1, 1, 1], 500)
    proba[np.arange(500), [labels.index(v) for v in y]] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    r = evaluate(y, proba, "multiclass", labels=labels)
    pred = np.array(labels)[proba.argmax(axis=1)]
    assert r.metrics["accuracy"] == skm.accuracy_score(y, pred)
    assert r.metrics["f1_macro"] == skm.f1_score(y, pred, average="macro")
    assert r.metrics["f1_weighted"] == skm.f1_score(y, pred, average="weighted")
    assert r.metrics["auc_ovr_macro"] == skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels)
    p, rc, _, _ = skm.precision_recall_fscore_support(y, pred, labels=labels)
    assert [r.per_class[c]["precision"] for c in labels] == p.tolist()
    assert [r.per_class[c]["recall"] for c in labels] == rc.tolist()
    assert r.confusion == skm.confusion_matrix(y, pred, labels=labels).tolist()
    most = np.full(500, "a")
    assert r.baseline["f1_macro"] == skm.f1_score(y, most, average="macro", labels=labels, zero_division=0)
    assert r.baseline["accuracy"] == skm.accuracy_score(y, most)
    # predicted labels instead of probabilities
    assert evaluate(y, pred, "multiclass", labels=labels).metrics["f1_macro"] == r.metrics["f1_macro"]
    with pytest.raises(EvaluationError, match="not among the model's labels"):
        evaluate(np.array(["a", "z"]), np.array([[1, 0, 0], [0, 1, 0.0]]), "multiclass", labels=labels)


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(2)
    y = rng.normal(100, 20, 400)
    pred = y + rng.normal(0, 5, 400)
    r = evaluate(y, pred, "regression")
    assert r.metrics["rmse"] == skm.root_mean_squared_error(y, pred)
    assert r.metrics["mae"] == skm.mean_absolute_error(y, pred)
    assert r.metrics["r2"] == skm.r2_score(y, pred)
    mean = np.full_like(y, y.mean())
    assert r.baseline == {
        "rmse": skm.root_mean_squared_error(y, mean),
        "mae": skm.mean_absolute_error(y, mean),
        "r2": skm.r2_score(y, mean),
    }
    assert r.residuals["median"] == np.median(y - pred)
    html = build_report(r).html()
    assert "Residual histogram" in html or "Residuals" in html


@pytest.fixture(scope="module")
def fraud_version(tmp_path_factory):
    repo = tmp_path_factory.mktemp("eval") / "models"
    train, valid = fraud_transactions(20_000, seed=1), fraud_transactions(12_000, seed=2)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        train[FEATURES], train["Class"]
    )
    result = export_model(pipe, name="fraud", repository=repo, sample=train[FEATURES].iloc[:300])
    path = repo.parent / "valid.parquet"
    valid.to_parquet(path, row_group_size=5000)
    return repo, result.path, pipe, valid, path


def test_evaluate_version_scores_through_the_served_path(fraud_version, tmp_path):
    repo, vdir, pipe, valid, path = fraud_version
    Registry(repo).register_version("fraud", "1")
    outcome = evaluate_version(
        vdir, path, "Class", chunk_rows=4000, threshold_target="recall>=0.5", importance_rows=1500
    )
    proba = pipe.predict_proba(valid[FEATURES])[:, 1]
    r = outcome.result
    assert r.n_rows == len(valid)
    served = load_version(vdir).score([row_block(load_version(vdir).manifest, valid[FEATURES])])
    assert r.metrics["auc"] == skm.roc_auc_score(valid["Class"], served["probabilities"][:, 1])
    # served probabilities are float32, so near-zero scores tie more often than in float64
    assert r.metrics["auc"] == pytest.approx(skm.roc_auc_score(valid["Class"], proba), abs=1e-3)
    assert r.metrics["recall"] >= 0.5
    saved = json.loads((vdir / "evaluation.json").read_text())
    assert saved["threshold"] == r.threshold and saved["metrics"]["auc"] == r.metrics["auc"]
    assert outcome.registry_updated
    rec = Registry(repo).get_version("fraud", "1")
    assert rec.threshold == r.threshold and rec.metrics["auc"] == r.metrics["auc"]
    imp = outcome.importance
    assert imp["kind"].startswith("permutation") and len(imp["features"]) == 30
    top = {imp["features"][i] for i in np.argsort(imp["values"])[-4:]}
    assert top & {"V10", "V12", "V14", "V17"}  # where the synthetic frauds sit apart
    out = write_report(outcome, tmp_path / "eval.html")
    html = out.read_text()
    for section in ("ROC", "Calibration", "Confusion matrix", "Feature importance", "Scores by true class"):
        assert section in html
    assert html.count("data:image/png;base64,") >= 5 and 'src="http' not in html


def test_evaluate_cli_and_bad_input(fraud_version, tmp_path, capsys):
    from onyxserve.cli import main

    _, vdir, _, valid, _ = fraud_version
    csv = tmp_path / "valid.csv"
    valid.iloc[:3000].to_csv(csv, index=False)
    code = main(
        [
            "evaluate",
            str(vdir),
            str(csv),
            "--target",
            "Class",
            "--no-save",
            "--json",
            "--threshold-for",
            "fpr<=0.01",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threshold_target"] == "fpr<=0.01" and out["metrics"]["false_positive_rate"] <= 0.01
    assert main(["evaluate", str(vdir), str(csv), "--target", "Nope"]) == 1
    assert "missing column(s) 'Nope'" in capsys.readouterr().err


def test_regression_and_native_importance(tmp_path):
    from tests.model_factory import price_frame

    X, y = price_frame(600)
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["area", "rooms", "age"]),
            ("cat", OneHotEncoder(), ["city"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("ridge", Ridge())]).fit(X, y)
    res = export_model(pipe, name="price", repository=tmp_path / "m", sample=X.iloc[:100])
    frame = X.assign(price=y)
    outcome = evaluate_version(res.path, frame, "price", estimator=pipe, save=False)
    assert outcome.result.metrics["rmse"] == pytest.approx(
        skm.root_mean_squared_error(y, pipe.predict(X)), rel=1e-5
    )
    assert outcome.importance["kind"].startswith("model") and "num__area" in outcome.importance["features"]
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(X[["area", "rooms"]], y > y.mean())
    from onyxserve.training.evaluation.importance import native

    assert native(rf)["features"] == ["area", "rooms"]
