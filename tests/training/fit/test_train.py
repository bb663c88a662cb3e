"""Training: every algorithm x task with real fits, determinism, class weights, progress, named
validation errors, and the `onyxserve train` command end to end (export -> servable version)."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.repository.manifest import Manifest
from onyxserve.repository.store import list_versions
from onyxserve.training.errors import TrainingError
from onyxserve.training.export.parity import row_block
from onyxserve.training.fit.train import export_trained, train_model

from onyxserve.cli import main
from tests.training.fit import train_data

data_dir, fraud_ds, mixed_ds, one_thread = (
    train_data.data_dir,
    train_data.fraud_ds,
    train_data.mixed_ds,
    train_data.one_thread,
)

SMALL = {
    "linear": {"max_passes": 8},
    "random_forest": {"n_estimators": 12, "max_depth": 6},
    "gradient_boosting": {"max_iter": 15},
    "mlp": {"hidden_layer_sizes": [16], "max_iter": 60, "learning_rate_init": 0.03},
}
NO_TEXT = {"features": {"note": "drop"}}
FLOOR = {"binary": ("roc_auc", 0.75), "multiclass": ("accuracy", 0.5), "regression": ("r2", 0.5)}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("algorithm", list(SMALL))
def test_every_algorithm_and_task_fits_and_learns(mixed_ds, algorithm, task):
    result = train_model(mixed_ds[task], algorithm=algorithm, params=SMALL[algorithm], recipe=NO_TEXT)
    assert result.task == task
    name, floor = FLOOR[task]
    assert result.metrics[name] > floor, result.metrics
    assert len(result.prepared.X_train) + len(result.prepared.X_eval) == 400
    assert set(result.prepared.train_index).isdisjoint(result.prepared.eval_index)
    assert result.stages >= 1 and result.seconds["fit"] > 0
    if task == "multiclass":
        assert sorted(result.pipeline.classes_) == ["high", "low", "mid"]


def test_text_attribute_trains(mixed_ds):
    result = train_model(mixed_ds["binary"], algorithm="linear")  # default recipe: tf-idf on 'note'
    names = result.pipeline[0].get_feature_names_out()
    assert any(n.startswith("text_note__") for n in names)
    assert not any("," in n or "!" in n for n in names)  # no_punct


@pytest.mark.parametrize("algorithm", list(SMALL))
def test_same_seed_same_predictions(fraud_ds, algorithm):
    params = {**SMALL[algorithm], **({"shuffle": True} if algorithm == "linear" else {})}
    a = train_model(fraud_ds, algorithm=algorithm, params=params, seed=3)
    b = train_model(fraud_ds, algorithm=algorithm, params=params, seed=3)
    X = a.prepared.X_eval
    np.testing.assert_array_equal(a.pipeline.predict_proba(X), b.pipeline.predict_proba(X))
    np.testing.assert_array_equal(a.prepared.train_index, b.prepared.train_index)


def test_fraud_split_is_stratified_and_balanced_weights_raise_recall(fraud_ds):
    plain = train_model(fraud_ds, algorithm="linear", params={"max_passes": 5})
    weighted = train_model(fraud_ds, algorithm="linear", params={"max_passes": 5}, class_weight="balanced")
    p = plain.prepared
    assert p.y_train.sum() == pytest.approx(0.7 * (p.y_train.sum() + p.y_eval.sum()), abs=1)
    positives = p.X_eval[p.y_eval == 1]
    mean = lambda r: r.pipeline.predict_proba(positives)[:, 1].mean()
    assert mean(weighted) > mean(plain)
    custom = train_model(fraud_ds, algorithm="linear", params={"max_passes": 5}, class_weight={"1": 50})
    assert mean(custom) > mean(plain)


def test_sequential_split_for_regression_and_explicit_split(mixed_ds):
    result = train_model(mixed_ds["regression"], algorithm="linear")
    assert list(result.prepared.train_index) == list(range(280))
    split = {"splitting": {"percentBegin": 0, "percentEnd": 50, "strategy": "random", "randomSeed": "x"}}
    half = train_model(mixed_ds["regression"], algorithm="linear", split=split)
    assert 150 < len(half.prepared.X_train) < 250


def test_progress_shows_passes(fraud_ds, capsys):
    train_model(fraud_ds, algorithm="linear", params={"max_passes": 3}, progress=True)
    assert "pass" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"algorithm": "svm"}, "algorithm"),
        ({"algorithm": "linear", "params": {"max_passes": 0}}, "max_passes"),
        ({"algorithm": "linear", "params": {"penalty": "l3"}}, "penalty"),
        ({"algorithm": "linear", "params": {"alpha": -1}}, "alpha"),
        ({"algorithm": "linear", "params": {"loss": "hinge"}}, "loss"),  # no probabilities to serve
        ({"algorithm": "linear", "params": {"shuffle": "yes"}}, "shuffle"),
        ({"algorithm": "random_forest", "params": {"n_estimators": 2.5}}, "n_estimators"),
        ({"algorithm": "random_forest", "params": {"max_depth": 0}}, "max_depth"),
        ({"algorithm": "gradient_boosting", "params": {"learning_rate": 0}}, "learning_rate"),
        ({"algorithm": "mlp", "params": {"hidden_layer_sizes": [0]}}, "hidden_layer_sizes"),
        ({"algorithm": "mlp", "params": {"epochs": 3}}, "epochs"),
        ({"algorithm": "linear", "task": "regression"}, "task"),
        ({"algorithm": "linear", "class_weight": "heavy"}, "class_weight"),
        ({"algorithm": "linear", "class_weight": {"7": 2}}, "class_weight"),
        ({"algorithm": "linear", "recipe": {"features": {"Nope": "drop"}}}, "features.Nope"),
        ({"algorithm": "linear", "split": {"splitting": {"percentEnd": 0}}}, "splitting"),
    ],
)
def test_bad_input_names_the_key(fraud_ds, kwargs, key):
    with pytest.raises(TrainingError) as info:
        train_model(fraud_ds, **kwargs)
    assert info.value.key == key, str(info.value)


def test_bad_params_fail_before_reading_data(fraud_ds, tmp_path):
    from dataclasses import replace

    from onyxserve.training.datasource.locations import Location

    gone = replace(
        fraud_ds, location=Location.from_dict({**fraud_ds.location.to_dict(), "uri": str(tmp_path / "x.csv")})
    )
    with pytest.raises(TrainingError, match="max_passes"):
        train_model(gone, algorithm="linear", params={"max_passes": -1})


@pytest.mark.parametrize(
    ("algorithm", "task"), [("linear", "binary"), ("random_forest", "multiclass"), ("mlp", "regression")]
)
def test_export_serves_the_same_scores(tmp_path, mixed_ds, algorithm, task):
    result = train_model(mixed_ds[task], algorithm=algorithm, params=SMALL[algorithm], recipe=NO_TEXT)
    exported = export_trained(result, name=f"m-{task}", repository=tmp_path)
    scorer = load_version(exported.path)
    manifest = scorer.manifest
    assert manifest.task == task
    assert manifest.lineage["training"]["hyperparameters"] == result.params
    assert manifest.lineage["datasource"]["checksum"] == mixed_ds[task].checksum
    assert manifest.lineage["recipe"]["features"]["note"] == "drop"
    # the drift baseline is the whole training frame, not the parity sample
    assert manifest.baseline["source"] == "training data"
    assert manifest.baseline["rows"] == len(result.prepared.X_train)
    rows = result.prepared.X_eval
    served = scorer.score([row_block(manifest, rows)])
    if task == "regression":
        expected = result.pipeline.predict(rows)
        np.testing.assert_allclose(served["value"].ravel(), expected, rtol=1e-4, atol=1e-3)
    else:
        np.testing.assert_allclose(served["probabilities"], result.pipeline.predict_proba(rows), atol=1e-5)


def test_cli_train_export_end_to_end(tmp_path, fraud_ds, capsys):
    ds_path = fraud_ds.save(tmp_path / "fraud.datasource.json")
    repo = tmp_path / "repo"
    args = ["train", str(ds_path), "--algorithm", "linear", "--params", '{"max_passes": 4, "penalty": "l1"}']
    args += ["--class-weight", "balanced", "--out", str(tmp_path / "m.joblib"), "--no-progress", "--json"]
    assert main([*args, "--export", "--name", "fraud", "--repository", str(repo)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exported"]["version"] == "1" and out["params"]["penalty"] == "l1"
    assert list_versions(repo / "fraud") == ["1"]
    scorer = load_version(repo / "fraud" / "1")
    pipeline = joblib.load(tmp_path / "m.joblib")
    rows = fraud_ds_rows(fraud_ds).head(50)
    served = scorer.score([row_block(scorer.manifest, rows)])
    np.testing.assert_allclose(served["probabilities"], pipeline.predict_proba(rows), atol=1e-5)

    # bad input: exit 2, the message names the key, and the registered version is untouched
    before = (repo / "fraud" / "1" / "manifest.json").read_bytes()
    assert (
        main(
            [
                "train",
                str(ds_path),
                "--algorithm",
                "linear",
                "--params",
                '{"alpha": "big"}',
                "--export",
                "--name",
                "fraud",
                "--repository",
                str(repo),
            ]
        )
        == 2
    )
    assert "key 'alpha'" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(ds_path),
                "--algorithm",
                "boost",
                "--export",
                "--name",
                "fraud",
                "--repository",
                str(repo),
            ]
        )
        == 2
    )
    assert "key 'algorithm'" in capsys.readouterr().err
    assert list_versions(repo / "fraud") == ["1"]
    assert (repo / "fraud" / "1" / "manifest.json").read_bytes() == before


def test_cli_export_serves_the_text_attribute(tmp_path, mixed_ds):
    """The default recipe vectorizes 'note' (tf-idf, 1-2 grams): it is exported into the graph."""
    ds_path = mixed_ds["binary"].save(tmp_path / "mixed.json")
    code = main(
        [
            "train",
            str(ds_path),
            "--algorithm",
            "linear",
            "--no-progress",
            "--export",
            "--name",
            "m",
            "--repository",
            str(tmp_path / "repo"),
        ]
    )
    assert code == 0
    manifest = Manifest.load(tmp_path / "repo" / "m" / "1" / "manifest.json")
    (note,) = [f for f in manifest.features if f.name == "note"]
    assert note.type == "text" and note.text.lowercase


def fraud_ds_rows(ds):
    import pandas as pd
    from onyxserve.training.datasource.record import read_frames

    return pd.concat(list(read_frames(ds))).drop(columns=["Class"])
