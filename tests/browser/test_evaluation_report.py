"""The evaluation report, produced by the real export + evaluate path, looked at in headless
Chromium: binary (through ``onyxserve evaluate --report``), multiclass and regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.evaluation.metrics import evaluate_version
from onyxserve.training.evaluation.report import write_report
from onyxserve.training.export.writer import export_model
from onyxserve.training.synthetic import FEATURES, fraud_transactions
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.browser.checks import assert_readable_report, table_with
from tests.browser.chromium import png_colours
from tests.model_factory import price_frame, price_pipeline

pytestmark = pytest.mark.timeout(240)

SPECIES = np.array(["setosa", "versicolor", "virginica"])
CENTERS = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _iris(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 3, n)
    frame = pd.DataFrame(CENTERS[idx] + rng.normal(scale=0.35, size=(n, 4)), columns=IRIS_FEATURES)
    return frame.assign(species=SPECIES[idx])


def _metrics_rows(view, metrics: dict) -> None:
    table = table_with(view, "metric")
    assert table["header"] == ["metric", "model", "baseline", "model - baseline"]
    assert [row[0] for row in table["cells"]] == list(metrics)
    assert all(row[1] for row in table["cells"]), "a metric without a value"


def test_binary_report_from_the_cli(browser, tmp_path):
    from onyxserve.cli import main

    train = fraud_transactions(6000, seed=1, positive_rate=0.03)
    valid = fraud_transactions(5000, seed=2, positive_rate=0.03)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(train[FEATURES], train["Class"])
    res = export_model(pipe, name="fraud", repository=tmp_path / "models", sample=train[FEATURES].iloc[:200])
    csv = tmp_path / "valid.csv"
    valid.to_csv(csv, index=False)
    page = tmp_path / "binary.html"
    args = ["evaluate", str(res.path), str(csv), "--target", "Class", "--threshold-for", "recall>=0.6",
            "--importance-rows", "800", "--no-save", "--report", str(page)]
    assert main(args) == 0

    view = browser.open(page)
    assert_readable_report(
        view,
        f"Evaluation of fraud version {res.path.name}",
        ["Metrics", "Confusion matrix", "ROC and precision-recall", "Scores by true class", "Calibration",
         "Feature importance"],
        images=5,
    )
    metrics = table_with(view, "metric")
    assert metrics["header"] == ["metric", "model", "baseline", "model - baseline"]
    auc = next(r for r in metrics["cells"] if r[0] == "auc")
    assert auc[2] == "0.5" and float(auc[1]) > 0.9  # model against the constant-score baseline
    confusion = table_with(view, "true \\ predicted")
    assert confusion["header"] == ["true \\ predicted", "0", "1"] and confusion["rows"] == 2

    shot = browser.screenshot(tmp_path / "binary.png")
    size, colours, ink = png_colours(shot.read_bytes())
    assert size[0] >= 1000 and size[1] > 2000, size  # the whole page, not the 900 px viewport
    assert colours > 1000 and ink > 0.05, (colours, ink)


def test_multiclass_report(browser, tmp_path):
    train, valid = _iris(600, seed=1), _iris(900, seed=2)
    model = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0)
    model.fit(train[IRIS_FEATURES], train["species"])
    res = export_model(model, name="iris", repository=tmp_path / "models", sample=train[IRIS_FEATURES].iloc[:200])
    outcome = evaluate_version(res.path, valid, "species", importance_rows=600, save=False)
    page = write_report(outcome, tmp_path / "multiclass.html")

    view = browser.open(page)
    assert_readable_report(
        view,
        f"Evaluation of iris version {res.path.name}",
        ["Metrics", "Per class", "Confusion matrix", "Probabilities by true class",
         "Calibration (one class against the rest)", "Feature importance"],
        images=4,
    )
    _metrics_rows(view, outcome.result.metrics)
    per_class = table_with(view, "class")
    assert [r[0] for r in per_class["cells"]] == list(SPECIES)
    assert table_with(view, "true \\ predicted")["header"][1:] == list(SPECIES)


def test_regression_report(browser, tmp_path):
    pipe, sample = price_pipeline()
    res = export_model(pipe, name="price", repository=tmp_path / "models", sample=sample.iloc[:200])
    X, y = price_frame(800, seed=3)
    outcome = evaluate_version(res.path, X.assign(price=y), "price", estimator=pipe, save=False)
    page = write_report(outcome, tmp_path / "regression.html")

    view = browser.open(page)
    assert_readable_report(
        view,
        f"Evaluation of price version {res.path.name}",
        ["Metrics", "Residuals (true - predicted)", "Feature importance"],
        images=2,
    )
    _metrics_rows(view, outcome.result.metrics)
    rmse = next(r for r in table_with(view, "metric")["cells"] if r[0] == "rmse")
    assert float(rmse[1].replace(",", "")) < float(rmse[2].replace(",", ""))  # beats predicting the mean
