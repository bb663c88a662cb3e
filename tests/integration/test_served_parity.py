"""Served scores equal scikit-learn's for every supported estimator and task, end to end:
export, one real server, Triton's client, one input per feature (numeric FP64 with NaN gaps,
BYTES for the categorical column, an unknown category among them)."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.training.export.writer import export_model

from tests.serving import ServerProcess, triton_feature_inputs
from tests.training.export.test_export import CLASSIFIERS, MATRIX, REGRESSORS, fit, sample_frame

IDS = [f"{name}-{task}" for name, task in MATRIX]


@pytest.fixture(scope="module")
def parity_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("parity") / "models"
    pipelines = {}
    for (name, task), model_name in zip(MATRIX, IDS):
        factory = CLASSIFIERS[name] if task != "regression" else REGRESSORS[name]
        pipelines[model_name] = fit(factory(), task)
        export_model(pipelines[model_name], name=model_name, repository=repo, sample=sample_frame())
    with ServerProcess(repo, args=["--model-control", "none"]) as server:
        client = triton.InferenceServerClient(server.grpc_target)
        yield client, pipelines
        client.close()


@pytest.mark.parametrize("model_name", IDS)
def test_served_scores_equal_sklearn(parity_server, model_name):
    client, pipelines = parity_server
    pipeline = pipelines[model_name]
    sample = sample_frame()
    result = client.infer(model_name, triton_feature_inputs(sample))
    if model_name.endswith("regression"):
        expected = pipeline.predict(sample)
        scale = np.sqrt(np.mean(expected**2))
        np.testing.assert_allclose(result.as_numpy("value"), expected, rtol=0, atol=1e-5 * scale)
    else:
        proba = pipeline.predict_proba(sample)
        np.testing.assert_allclose(result.as_numpy("probabilities"), proba, rtol=0, atol=1e-5)
        labels = result.as_numpy("label")
        if labels.dtype == object:
            labels = np.array([v.decode() for v in labels])
        top2 = np.sort(proba, axis=1)[:, -2:]
        decided = top2[:, 1] - top2[:, 0] > 2e-5
        assert (labels[decided] == pipeline.predict(sample)[decided]).all()
