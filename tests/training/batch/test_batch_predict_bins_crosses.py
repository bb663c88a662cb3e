"""Batch prediction of a model with quantile bins and a cartesian equals the pipeline's scores
(CSV and Parquet, several chunks, the cross's input-only parent read as a string column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.training.batch.predict import batch_predict
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import export_model

from tests.training import bins_crosses_models as models


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_batch_scores_equal_the_pipeline(tmp_path, fmt):
    pipeline = models.binned_crossed()
    exported = export_model(pipeline, name="bc", repository=tmp_path / "repo", sample=models.frame(200, seed=1))
    rows = pd.concat([models.frame(700, seed=9), models.edge_rows(pipeline, models.frame(30, seed=2))], ignore_index=True)
    src = tmp_path / f"rows.{fmt}"
    rows.to_csv(src, index=False) if fmt == "csv" else rows.to_parquet(src, index=False)
    summary = batch_predict(exported.path, src, tmp_path / "out.parquet", chunk_rows=256, progress=False)
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert summary.rows == len(rows) == len(out)
    read_back = pd.read_csv(src, keep_default_na=False, na_values=[""]) if fmt == "csv" else pd.read_parquet(src)
    got = out[["probability_0", "probability_1"]].to_numpy()
    np.testing.assert_allclose(got, pipeline.predict_proba(read_back), rtol=0, atol=1e-5)
    scorer = load_version(exported.path, intra_op_threads=1)  # and the served path, exactly
    np.testing.assert_array_equal(got, scorer.score([row_block(scorer.manifest, read_back)])["probabilities"])
