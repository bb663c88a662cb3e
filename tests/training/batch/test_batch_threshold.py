"""Batch prediction labels follow the same decision threshold the server answers with."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from onyxserve.repository.registry import Registry
from onyxserve.training.batch.predict import BatchError, batch_predict, batch_predict_dask

from onyxserve.cli import main
from tests.model_factory import fraud_frame


@pytest.fixture
def repo(model_repo, tmp_path):
    root, _ = model_repo
    copy = tmp_path / "models"
    shutil.copytree(root, copy)  # the session's repository stays without thresholds
    Registry(copy).sync()
    return copy


def _scored(path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def test_registry_threshold_decides_batch_labels(repo, tmp_path):
    X, _ = fraud_frame(800, seed=3)
    X.to_parquet(tmp_path / "in.parquet")
    vdir = repo / "fraud" / "1"
    batch_predict(vdir, tmp_path / "in.parquet", tmp_path / "own.parquet", progress=False)
    own = _scored(tmp_path / "own.parquet")
    p = own["probability_1"].to_numpy()
    np.testing.assert_array_equal(own["label"], (p > 0.5).astype(np.int64))  # no threshold yet
    t = float(np.quantile(p, 0.6))
    assert ((p >= t) != (p > 0.5)).any()  # the threshold must move labels for this to mean anything
    Registry(repo).set_threshold("fraud", "1", t)
    batch_predict(vdir, tmp_path / "in.parquet", tmp_path / "cut.parquet", progress=False)
    cut = _scored(tmp_path / "cut.parquet")
    np.testing.assert_array_equal(cut["probability_1"], own["probability_1"])  # scores unchanged
    np.testing.assert_array_equal(cut["label"], (p >= t).astype(np.int64))
    # the CLI: 'none' keeps the model's own label, a number overrides the registry
    assert main(["batch-predict", str(vdir), str(tmp_path / "in.parquet"), "--out", str(tmp_path / "n.parquet"),
                 "--threshold", "none", "--no-progress"]) == 0
    np.testing.assert_array_equal(_scored(tmp_path / "n.parquet")["label"], own["label"])
    assert main(["batch-predict", str(vdir), str(tmp_path / "in.parquet"), "--out", str(tmp_path / "h.parquet"),
                 "--threshold", "0.99", "--no-progress"]) == 0
    np.testing.assert_array_equal(_scored(tmp_path / "h.parquet")["label"], (p >= 0.99).astype(np.int64))
    with pytest.raises(BatchError, match="between 0 and 1"):
        batch_predict(vdir, tmp_path / "in.parquet", tmp_path / "bad.parquet", threshold=2.0, progress=False)
    # on Dask the client resolves the registry's threshold once and the workers apply it
    summary = batch_predict_dask(vdir, tmp_path / "in.parquet", tmp_path / "dask.parquet", n_workers=1,
                                 progress=False)
    parts = sorted((tmp_path / "dask.parquet").glob("part-*.parquet"))
    out = pd.concat([_scored(part) for part in parts], ignore_index=True)
    assert summary.rows == len(X)
    np.testing.assert_array_equal(out["label"], cut["label"])
