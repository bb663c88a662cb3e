"""`onyxserve export` as a user runs it: a joblib file and a CSV in, a model version out."""

from __future__ import annotations

import json
import subprocess
import sys

import joblib
from onyxserve.core.scorer import load_version
from onyxserve.repository.manifest import Manifest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

from onyxserve.cli import main
from tests.training.data import mixed_frame, targets


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "onyxserve", "export", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_exports_a_version(tmp_path, capsys):
    frame = mixed_frame()
    pre = ColumnTransformer([("num", Pipeline([("imp", SimpleImputer()), ("sc", StandardScaler())]), ["age", "income"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough")
    pipeline = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))])
    pipeline.fit(frame, targets(frame, "multiclass"))
    joblib.dump(pipeline, tmp_path / "pipe.joblib")
    frame.assign(label=targets(frame, "multiclass")).iloc[:100].to_csv(tmp_path / "sample.csv", index=False)

    repo = tmp_path / "repo"
    done = run_cli(tmp_path / "pipe.joblib", "--name", "churn", "--repository", repo,
                   "--sample", tmp_path / "sample.csv", "--target", "label", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["version"] == "1" and out["task"] == "multiclass"
    assert out["features"] == ["age", "income", "color", "visits"]
    version_dir = repo / "churn" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["manifest.json", "model.onnx"]
    assert (repo / "churn" / "config.json").exists()
    manifest = Manifest.load(version_dir / "manifest.json")
    assert manifest.labels == ("high", "low", "mid")
    assert load_version(version_dir).manifest.version == "1"  # sha256 verified on load

    # in-process through the dispatcher this time
    code = main(["export", str(tmp_path / "pipe.joblib"), "--name", "churn", "--repository", str(repo),
                 "--sample", str(tmp_path / "sample.csv"), "--target", "label", "--version", "5"])
    assert code == 0 and "exported churn version 5" in capsys.readouterr().out
    assert (repo / "churn" / "5" / "model.onnx").exists()


def test_cli_refusal_names_the_step_and_exits_nonzero(tmp_path):
    frame = mixed_frame()[["age", "income"]].fillna(0)
    pipeline = Pipeline([("poly", PolynomialFeatures()), ("hgb", HistGradientBoostingClassifier(max_iter=5))])
    pipeline.fit(frame, targets(mixed_frame(), "binary"))
    joblib.dump(pipeline, tmp_path / "pipe.joblib")
    frame.to_csv(tmp_path / "sample.csv", index=False)
    done = run_cli(tmp_path / "pipe.joblib", "--name", "x", "--repository", tmp_path / "repo",
                   "--sample", tmp_path / "sample.csv", cwd=tmp_path)
    assert done.returncode == 1
    assert "step 'poly' (PolynomialFeatures) is not supported" in done.stderr
    assert not (tmp_path / "repo" / "x").exists() or not list((tmp_path / "repo" / "x").glob("[0-9]*"))
