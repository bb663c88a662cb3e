"""Tuning: each strategy within a trial budget and a time budget, early stopping, the history
file (JSON and CSV), space validation with named keys, and `onyxserve tune`."""

from __future__ import annotations

import csv
import json
import time

import pytest
from onyxserve.training.errors import TrainingError
from onyxserve.training.fit.train import prepare
from onyxserve.training.fit.tune import parse_space, tune_model

from onyxserve.cli import main
from tests.training.fit import train_data

data_dir, fraud_ds, one_thread = train_data.data_dir, train_data.fraud_ds, train_data.one_thread

LINEAR_SPACE = {
    "alpha": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "penalty": {"type": "categorical", "choices": ["l1", "l2"]},
    "max_passes": {"type": "int", "low": 2, "high": 12},
}


@pytest.fixture(scope="module")
def prepared(fraud_ds):
    return prepare(fraud_ds, seed=0)


@pytest.mark.parametrize("strategy", ["random", "optuna", "halving"])
def test_strategies_respect_both_budgets_and_save_history(tmp_path, fraud_ds, prepared, strategy):
    path = tmp_path / "trials.json"
    started = time.monotonic()
    result = tune_model(
        fraud_ds,
        "linear",
        LINEAR_SPACE,
        strategy=strategy,
        trials=5,
        timeout_s=20,
        history_path=path,
        prepared=prepared,
    )
    assert time.monotonic() - started < 20
    assert result.stopped_by == "trials"
    configs = {h["number"] for h in result.history}
    assert len(configs) == 5
    doc = json.loads(path.read_text())
    assert doc["summary"]["best_score"] == result.best_score and doc["history"] == json.loads(
        json.dumps(result.history)
    )
    for h in doc["history"]:
        assert set(h) >= {"number", "params", "state", "score", "duration_s"}
        assert set(h["params"]) == set(LINEAR_SPACE)
        assert h["state"] in ("COMPLETE", "PRUNED", "FAIL")
    assert 0.5 < result.best_score <= 1.0
    assert result.best.params["alpha"] == result.best_params["alpha"]
    assert result.best.metrics["roc_auc"] == pytest.approx(result.best_score)
    if strategy == "halving":  # 5 configurations, factor 3: 5 fits on a third of the rows, then 2 on all
        assert [h["rung"] for h in result.history] == [0] * 5 + [1] * 2
        assert result.history[0]["rows"] < result.history[-1]["rows"] == len(prepared.y_train)


def test_optuna_prunes_poor_trials(fraud_ds, prepared):
    space = {"alpha": {"type": "float", "low": 1e-6, "high": 10.0, "log": True}}
    result = tune_model(fraud_ds, "linear", space, strategy="optuna", trials=12, seed=1, prepared=prepared)
    states = [h["state"] for h in result.history]
    assert "PRUNED" in states and states.count("COMPLETE") >= 2
    pruned = next(h for h in result.history if h["state"] == "PRUNED")
    assert pruned["intermediate"] and pruned["note"] == "below the median of earlier trials"


def test_time_budget_stops_first(tmp_path, fraud_ds, prepared):
    space = {
        "n_estimators": {"type": "int", "low": 10, "high": 40},
        "max_depth": {"type": "int", "low": 3, "high": 8},
    }
    started = time.monotonic()
    result = tune_model(
        fraud_ds,
        "random_forest",
        space,
        strategy="random",
        trials=1000,
        timeout_s=1.5,
        history_path=tmp_path / "h.csv",
        prepared=prepared,
    )
    elapsed = time.monotonic() - started
    assert result.stopped_by == "time budget"
    assert elapsed < 1.5 + 2.0  # at most one growth step past the deadline
    assert len(result.history) < 1000
    with open(tmp_path / "h.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.history)
    assert {"param_n_estimators", "param_max_depth", "state", "score", "duration_s"} <= set(rows[0])


def test_same_seed_same_search(fraud_ds, prepared):
    a = tune_model(fraud_ds, "linear", LINEAR_SPACE, strategy="optuna", trials=4, seed=5, prepared=prepared)
    b = tune_model(fraud_ds, "linear", LINEAR_SPACE, strategy="optuna", trials=4, seed=5, prepared=prepared)
    assert [h["params"] for h in a.history] == [h["params"] for h in b.history]
    assert a.best_score == b.best_score


@pytest.mark.parametrize(
    ("space", "key"),
    [
        ({"gamma": {"type": "float", "low": 0, "high": 1}}, "space.gamma"),
        ({"alpha": {"type": "float", "low": -1, "high": 1}}, "space.alpha.low"),
        ({"alpha": {"type": "float", "low": 0.1}}, "space.alpha.high"),
        ({"alpha": {"type": "float", "low": 0.5, "high": 0.1}}, "space.alpha.low"),
        ({"alpha": {"type": "integer", "low": 1, "high": 2}}, "space.alpha.type"),
        ({"max_passes": {"type": "float", "low": 1, "high": 5}}, "space.max_passes.type"),
        ({"penalty": {"type": "categorical", "choices": ["l1", "l9"]}}, "space.penalty.choices"),
        ({"penalty": {"type": "categorical", "choices": []}}, "space.penalty.choices"),
        ({"l1_ratio": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "space.l1_ratio.log"),
        ({"alpha": {"type": "float", "low": 0.1, "high": 1, "bins": 3}}, "space.alpha"),
    ],
)
def test_space_errors_name_the_key(space, key):
    with pytest.raises(TrainingError) as info:
        parse_space(space, "linear", "binary")
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"strategy": "grid"}, "strategy"),
        ({"trials": 0}, "trials"),
        ({"timeout_s": -1}, "timeout"),
        ({"metric": "rmse"}, "metric"),
        ({"params": {"alpha": 0.1}}, "alpha"),  # fixed and searched
        ({"params": {"max_passes": 0}}, "max_passes"),
    ],
)
def test_tune_arguments_name_the_key(fraud_ds, prepared, kwargs, key):
    with pytest.raises(TrainingError) as info:
        tune_model(fraud_ds, "linear", LINEAR_SPACE, prepared=prepared, **kwargs)
    assert info.value.key == key, str(info.value)


def test_cli_tune(tmp_path, fraud_ds, capsys):
    ds_path = fraud_ds.save(tmp_path / "fraud.json")
    (tmp_path / "space.json").write_text(json.dumps(LINEAR_SPACE))
    args = [
        "tune",
        str(ds_path),
        "--algorithm",
        "linear",
        "--space",
        str(tmp_path / "space.json"),
        "--trials",
        "3",
    ]
    args += ["--time-budget", "20", "--history", str(tmp_path / "t.json"), "--out", str(tmp_path / "best.joblib")]
    assert main([*args, "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials"] == 3 and out["metric"] == "roc_auc" and set(out["best_params"]) == set(LINEAR_SPACE)
    assert (tmp_path / "best.joblib").exists() and json.loads((tmp_path / "t.json").read_text())["history"]
    bad = ["tune", str(ds_path), "--algorithm", "linear", "--space", '{"alpha": {"type": "float"}}']
    assert main(bad) == 2
    assert "space.alpha.low" in capsys.readouterr().err


def test_a_fit_longer_than_the_budget_is_stopped_inside(fraud_ds, prepared):
    space = {"n_estimators": {"type": "int", "low": 3000, "high": 5000}}
    started = time.monotonic()
    with pytest.raises(TrainingError) as info:
        tune_model(
            fraud_ds, "random_forest", space, strategy="random", trials=3, timeout_s=0.3, prepared=prepared
        )
    assert info.value.key == "timeout" and "no trial completed" in str(info.value)
    assert time.monotonic() - started < 0.3 + 5.0  # one growth step (a tenth of the forest) at most
