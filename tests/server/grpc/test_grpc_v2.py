"""The V2 gRPC service against the real server, through Triton's own client and our stubs."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from tests.model_factory import FRAUD_FEATURES
from tests.serving import triton_feature_inputs


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.grpc_target)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def fraud_input(rows: np.ndarray, dtype=np.float32, name: str = "input") -> triton.InferInput:
    inp = triton.InferInput(name, list(rows.shape), "FP32" if dtype == np.float32 else "FP64")
    inp.set_data_from_numpy(rows.astype(dtype))
    return inp


def test_server_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "onyxserve"
    assert "model_repository" in meta.extensions
    assert client.is_model_ready("fraud")
    assert client.is_model_ready("fraud", "1")
    assert not client.is_model_ready("nope")


def test_model_metadata_names_inputs_and_outputs(client):
    meta = client.get_model_metadata("fraud")
    assert meta.versions == ["1"]
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [("input", "FP64", [-1, 30])]
    assert [(o.name, o.datatype) for o in meta.outputs] == [("label", "INT64"), ("probabilities", "FP32")]
    price = client.get_model_metadata("price")
    assert [(i.name, i.datatype) for i in price.inputs] == [
        ("area", "FP64"), ("rooms", "FP64"), ("age", "FP64"), ("city", "BYTES")
    ]
    assert [(o.name, o.datatype) for o in price.outputs] == [("value", "FP32")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fraud_scores_equal_sklearn(client, model_repo, dtype):
    _, models = model_repo
    pipeline, X = models["fraud"]
    rows = X.iloc[:64].to_numpy()
    result = client.infer("fraud", [fraud_input(rows, dtype)])
    proba = result.as_numpy("probabilities")
    np.testing.assert_allclose(proba, pipeline.predict_proba(X.iloc[:64]), atol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), pipeline.predict(X.iloc[:64]))
    assert result.get_response().model_version == "1"


def test_one_row_per_request_and_requested_outputs(client, model_repo):
    _, models = model_repo
    pipeline, X = models["fraud"]
    out = triton.InferRequestedOutput("probabilities")
    result = client.infer("fraud", [fraud_input(X.iloc[[7]].to_numpy())], outputs=[out], model_version="1")
    assert result.as_numpy("label") is None
    np.testing.assert_allclose(result.as_numpy("probabilities"), pipeline.predict_proba(X.iloc[[7]]), atol=1e-5)


def test_multiclass_string_labels(client, model_repo):
    _, models = model_repo
    forest, X = models["iris"]
    rows = X.iloc[:20].to_numpy()
    inp = triton.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows.astype(np.float32))
    result = client.infer("iris", [inp])
    labels = [v.decode() for v in result.as_numpy("label")]
    assert labels == list(forest.predict(X.iloc[:20]))
    np.testing.assert_allclose(result.as_numpy("probabilities"), forest.predict_proba(X.iloc[:20]), atol=1e-5)


def test_regression_with_categorical_bytes(client, model_repo):
    _, models = model_repo
    pipeline, X = models["price"]
    frame = X.iloc[:50]
    result = client.infer("price", triton_feature_inputs(frame))
    np.testing.assert_allclose(result.as_numpy("value"), pipeline.predict(frame), rtol=1e-5, atol=1e-3)


def test_typed_contents_are_accepted(stub, model_repo):
    _, models = model_repo
    pipeline, X = models["price"]
    frame = X.iloc[:3]
    request = pb.ModelInferRequest(model_name="price")
    for column in frame.columns:
        t = request.inputs.add(name=column, shape=[3])
        if column == "city":
            t.datatype = "BYTES"
            t.contents.bytes_contents.extend(v.encode() for v in frame[column])
        else:
            t.datatype = "FP64"
            t.contents.fp64_contents.extend(frame[column].tolist())
    response = stub.ModelInfer(request)
    value = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    np.testing.assert_allclose(value, pipeline.predict(frame), rtol=1e-5, atol=1e-3)


def test_stream_infer_answers_each_request(client, model_repo):
    _, models = model_repo
    pipeline, X = models["fraud"]
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(5):
            client.async_stream_infer("fraud", [fraud_input(X.iloc[[i]].to_numpy())], request_id=str(i))
        client.async_stream_infer("missing-model", [fraud_input(X.iloc[[0]].to_numpy())], request_id="bad")
        got = [answers.get(timeout=10) for _ in range(6)]
    finally:
        client.stop_stream()
    ok = {r.get_response().id: r for r, e in got if e is None}
    errors = [e for _, e in got if e is not None]
    assert sorted(ok) == ["0", "1", "2", "3", "4"]
    np.testing.assert_allclose(ok["3"].as_numpy("probabilities"), pipeline.predict_proba(X.iloc[[3]]), atol=1e-5)
    assert len(errors) == 1 and "missing-model" in str(errors[0])


def test_model_config_reports_batching(client):
    config = client.get_model_config("fraud").config
    assert config.name == "fraud"
    assert config.max_batch_size == 32
    assert config.input[0].name == "input" and list(config.input[0].dims) == [30]
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 1024


def test_statistics_count_rows_and_batches(client, model_repo):
    _, models = model_repo
    _, X = models["fraud"]
    before = client.get_inference_statistics("fraud").model_stats[0]
    client.infer("fraud", [fraud_input(X.iloc[:10].to_numpy())])
    after = client.get_inference_statistics("fraud").model_stats[0]
    assert after.inference_count - before.inference_count == 10
    assert after.execution_count - before.execution_count == 1
    assert after.inference_stats.success.count - before.inference_stats.success.count == 1
    assert after.last_inference > 0


def test_repository_index_lists_models(client):
    index = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
    assert index == {("fraud", "1"): "READY", ("iris", "1"): "READY", ("price", "1"): "READY"}


def test_unknown_model_is_not_found(client):
    with pytest.raises(InferenceServerException) as exc:
        client.get_model_metadata("nope")
    assert exc.value.status() == "StatusCode.NOT_FOUND"
    assert "nope" in exc.value.message()


def test_features_are_the_fraud_columns(client):
    config = client.get_model_config("fraud").config
    assert config.parameters["features"].string_value.split(",") == FRAUD_FEATURES
