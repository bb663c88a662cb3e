"""Binned features and crosses served by the real server over gRPC: the same scores as the
scikit-learn pipeline, one input per feature (the cross's input-only parent included) and, for
an all-numeric binned model, one [N, F] FP32 matrix."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.training.export.writer import export_model
from tritonclient.utils import InferenceServerException

from tests.serving import ServerProcess, triton_feature_inputs
from tests.training import bins_crosses_models as models


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("bins-crosses") / "models"
    crossed, numeric = models.binned_crossed(), models.binned_numeric()
    export_model(crossed, name="bc", repository=repo, sample=models.frame(200, seed=1))
    sample = models.frame(200, seed=3)[["age", "income"]].fillna({"age": 41.0})
    export_model(numeric, name="bn", repository=repo, sample=sample)
    with ServerProcess(repo, args=["--model-control", "none"]) as server:
        client = triton.InferenceServerClient(server.grpc_target)
        yield client, crossed, numeric
        client.close()


def test_form_b_with_cross_equals_sklearn(served):
    client, crossed, _ = served
    rows = models.edge_rows(crossed, models.frame(50, seed=2))
    # what a client sends: a missing category is the empty string
    sent = rows.astype({"merchant": object, "channel": object}).fillna({"merchant": "", "channel": ""})
    assert list(sent.columns) == ["age", "merchant", "income", "channel"]  # channel: the cross's parent only
    result = client.infer("bc", triton_feature_inputs(sent))
    np.testing.assert_allclose(result.as_numpy("probabilities"), crossed.predict_proba(rows), rtol=0, atol=1e-5)


def test_form_a_matrix_with_bins_equals_sklearn(served):
    client, _, numeric = served
    rows = models.edge_rows(numeric, models.frame(40, seed=6)[["age", "income"]].fillna({"age": 30.0}))
    matrix = rows[["age", "income"]].to_numpy(np.float32)  # FP32 on the wire: score what was sent
    inp = triton.InferInput("input", list(matrix.shape), "FP32")
    inp.set_data_from_numpy(matrix)
    result = client.infer("bn", [inp])
    expected = numeric.predict_proba(rows.assign(age=matrix[:, 0].astype(np.float64), income=matrix[:, 1].astype(np.float64)))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=0, atol=1e-5)


def test_nan_in_a_binned_feature_without_imputer_is_named(served):
    client, _, _ = served
    matrix = np.array([[30.0, 5.0], [np.nan, 5.0]], dtype=np.float32)
    inp = triton.InferInput("input", list(matrix.shape), "FP32")
    inp.set_data_from_numpy(matrix)
    with pytest.raises(InferenceServerException) as info:
        client.infer("bn", [inp])
    assert "feature 'age' row 1" in str(info.value) and "NaN" in str(info.value)


def test_missing_cross_parent_is_named(served):
    client, _, _ = served
    rows = models.frame(10, seed=8).fillna({"merchant": ""})
    inputs = [i for i in triton_feature_inputs(rows) if i.name() != "channel"]
    with pytest.raises(InferenceServerException) as info:
        client.infer("bc", inputs)
    assert "channel" in str(info.value)
