"""InferenceClient end to end against the real server: metadata, inputs from numpy, DataFrames
and dicts, outputs equal to the scikit-learn models, unix socket, TLS/mTLS, errors, retries."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from onyxserve.clients import ClientOptions, InferenceClient, InferResult, OnyxClientError
from onyxserve.clients.retry import Deadline, RetryPolicy

from tests.clients.conftest import Restart

ATOL = 1e-5


@pytest.fixture(scope="module")
def client(server):
    with InferenceClient(server.grpc_target, ClientOptions(timeout_s=10)) as c:
        yield c


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.server_metadata().name == "onyxserve"
    assert client.is_model_ready("fraud") and client.is_model_ready("fraud", "1")
    assert not client.is_model_ready("nope")
    meta = client.model_metadata("price")
    assert [(i.name, i.datatype) for i in meta.inputs] == [
        ("area", "FP64"), ("rooms", "FP64"), ("age", "FP64"), ("city", "BYTES")
    ]
    assert client.model_config("fraud").parameters["task"].string_value == "binary"
    assert {(m.name, m.state) for m in client.repository_index()} == {
        ("fraud", "READY"), ("iris", "READY"), ("price", "READY")
    }
    stats = client.model_statistics("fraud")
    assert [s.name for s in stats] == ["fraud"]
    assert {s.name for s in client.model_statistics()} == {"fraud", "iris", "price"}


def test_numpy_rows_equal_sklearn(client, model_repo):
    pipeline, X = model_repo[1]["fraud"]
    for rows in (X.iloc[:64].to_numpy(), X.iloc[:64].to_numpy(np.float32)):
        result = client.infer("fraud", rows)
        np.testing.assert_allclose(result.probabilities, pipeline.predict_proba(X.iloc[:64]), atol=ATOL)
        np.testing.assert_array_equal(result.labels, pipeline.predict(X.iloc[:64]))
        assert result.values is None and result.model_version == "1"


def test_fraud_dataframe_columns_by_name(client, model_repo):
    pipeline, X = model_repo[1]["fraud"]
    frame = X.iloc[:10]
    shuffled = frame[frame.columns[::-1]].assign(extra=1.0)  # order and extra columns do not matter
    result = client.infer("fraud", shuffled)
    np.testing.assert_allclose(result.probabilities, pipeline.predict_proba(frame), atol=ATOL)


def test_price_dataframe_with_nan_and_categorical(client, model_repo):
    pipeline, X = model_repo[1]["price"]
    frame = X.iloc[:60].copy()
    frame.iloc[[0, 5, 9], frame.columns.get_loc("age")] = np.nan
    assert frame["age"].isna().sum() >= 3
    result = client.infer("price", frame[["city", "age", "rooms", "area"]])
    # float32 outputs of a few hundred: compare relative to the value, then absolute near zero
    np.testing.assert_allclose(result.values, pipeline.predict(frame), rtol=1e-5, atol=ATOL)
    assert result.labels is None


def test_dict_inputs(client, model_repo):
    pipeline, X = model_repo[1]["price"]
    frame = X.iloc[:5]
    rows = frame.to_dict("records")
    expected = pipeline.predict(frame)
    np.testing.assert_allclose(client.predict("price", rows), expected, rtol=1e-5, atol=ATOL)
    np.testing.assert_allclose(client.predict("price", rows[2]), expected[2:3], rtol=1e-5, atol=ATOL)
    columns = {name: frame[name].tolist() for name in frame.columns}
    np.testing.assert_allclose(client.predict("price", columns), expected, rtol=1e-5, atol=ATOL)


def test_iris_string_labels_and_predict(client, model_repo):
    forest, X = model_repo[1]["iris"]
    labels, probabilities = client.predict("iris", X.iloc[:20])
    assert list(labels) == list(forest.predict(X.iloc[:20]))
    assert all(isinstance(v, str) for v in labels)
    np.testing.assert_allclose(probabilities, forest.predict_proba(X.iloc[:20]), atol=ATOL)


def test_requested_outputs_version_and_request_id(client, model_repo):
    pipeline, X = model_repo[1]["fraud"]
    result = client.infer("fraud", X.iloc[[7]], outputs=["probabilities"], model_version="1", request_id="r7")
    assert isinstance(result, InferResult) and result.output_names == ["probabilities"] and result.id == "r7"
    assert result.labels is None
    expected = pipeline.predict_proba(X.iloc[[7]])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)


def test_missing_feature_fails_before_sending(client, model_repo, monkeypatch):
    _, X = model_repo[1]["price"]
    client.schema("price")  # cached, so the failing call below must not reach the server at all
    sent = []
    real_call = client._call
    monkeypatch.setattr(client, "_call", lambda method, *a: sent.append(method) or real_call(method, *a))
    with pytest.raises(OnyxClientError) as exc:
        client.infer("price", X.drop(columns=["city"]))
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'city'" in str(exc.value)
    with pytest.raises(OnyxClientError, match=r"row 1 lacks feature \['age'\]"):
        client.infer("price", [{"area": 50, "rooms": 2, "age": 3, "city": "oslo"}, {"area": 1, "rooms": 1,
                                                                                       "city": "lima"}])
    assert sent == []


def test_server_side_invalid_argument_is_not_retried(model_repo, server):
    _, X = model_repo[1]["price"]
    frame = X.iloc[:2].assign(city=["paris", "atlantis"])
    with InferenceClient(server.grpc_target, ClientOptions(retries=5, backoff_initial_s=1.0)) as c:
        started = time.monotonic()
        with pytest.raises(OnyxClientError) as exc:
            c.infer("price", frame)
    assert exc.value.status == "INVALID_ARGUMENT" and "atlantis" in exc.value.message
    assert time.monotonic() - started < 1.0  # no backoff sleep happened


def test_unknown_model_is_not_found(client):
    with pytest.raises(OnyxClientError) as exc:
        client.infer("nope", np.zeros((1, 30)))
    error = exc.value
    assert error.code == grpc.StatusCode.NOT_FOUND and error.status == "NOT_FOUND"
    assert "nope" in error.message and str(error).startswith("NOT_FOUND: ")
    assert error.__cause__ is None and error.__suppress_context__  # one line, no grpc traceback


def test_wrong_target_is_unavailable_after_bounded_retries():
    options = ClientOptions(retries=3, backoff_initial_s=0.05, backoff_max_s=0.2)
    started = time.monotonic()
    with InferenceClient("127.0.0.1:1", options) as c, pytest.raises(OnyxClientError) as exc:
        c.is_server_ready()
    assert exc.value.status == "UNAVAILABLE"
    assert "127.0.0.1:1" in exc.value.message and "4 attempts" in exc.value.message
    assert time.monotonic() - started < 5


def test_deadline_bounds_the_retries():
    options = ClientOptions(retries=1000, backoff_initial_s=0.05, backoff_max_s=0.1)
    started = time.monotonic()
    with InferenceClient("127.0.0.1:1", options) as c, pytest.raises(OnyxClientError) as exc:
        c.is_server_live(timeout=0.8)
    assert exc.value.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    assert time.monotonic() - started < 2


def test_unix_socket(uds_server, uds_path, model_repo):
    pipeline, X = model_repo[1]["fraud"]
    with InferenceClient(f"unix://{uds_path}") as c:
        assert c.is_server_ready()
        _, probabilities = c.predict("fraud", X.iloc[:8])
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(X.iloc[:8]), atol=ATOL)


def test_tls(tls_server, pki, model_repo):
    forest, X = model_repo[1]["iris"]
    with InferenceClient(tls_server.grpc_target, ClientOptions(tls_ca=pki.ca)) as c:
        assert c.is_server_ready()
        assert list(c.predict("iris", X.iloc[:4])[0]) == list(forest.predict(X.iloc[:4]))
    with InferenceClient(f"localhost:{tls_server.grpc_port}", ClientOptions(tls_ca=pki.ca.read_bytes())) as c:
        assert c.is_server_live()
    named = ClientOptions(tls_ca=pki.ca, server_name_override="localhost")
    with InferenceClient(tls_server.grpc_target, named) as c:
        assert c.is_server_live()
    misnamed = ClientOptions(tls_ca=pki.ca, server_name_override="elsewhere.example", retries=0)
    with InferenceClient(tls_server.grpc_target, misnamed) as c, pytest.raises(OnyxClientError) as exc:
        c.is_server_live(timeout=5)
    assert exc.value.status == "UNAVAILABLE"


@pytest.mark.parametrize("options", [ClientOptions(tls=True, retries=1), ClientOptions(retries=1)],
                         ids=["tls-without-ca", "plaintext"])
def test_tls_mismatch_is_one_clear_error(tls_server, options):
    with InferenceClient(tls_server.grpc_target, options) as c, pytest.raises(OnyxClientError) as exc:
        c.is_server_ready(timeout=5)
    assert exc.value.status == "UNAVAILABLE" and tls_server.grpc_target in exc.value.message
    assert "ClientOptions(tls_ca=" in exc.value.message or "ClientOptions.tls_ca" in exc.value.message
    assert "\n" not in str(exc.value)


def test_mutual_tls(mtls_server, pki):
    mutual = ClientOptions(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    with InferenceClient(mtls_server.grpc_target, mutual) as c:
        assert c.is_server_ready()
    anonymous = ClientOptions(tls_ca=pki.ca, retries=1)
    with InferenceClient(mtls_server.grpc_target, anonymous) as c, pytest.raises(OnyxClientError) as exc:
        c.is_server_ready(timeout=5)
    assert exc.value.status == "UNAVAILABLE" and "tls_cert=" in exc.value.message


def test_retries_across_a_server_restart(own_server, model_repo):
    pipeline, X = model_repo[1]["fraud"]
    options = ClientOptions(retries=60, backoff_initial_s=0.05, backoff_max_s=0.25, timeout_s=12)
    with InferenceClient(own_server.grpc_target, options) as c:
        assert c.predict("fraud", X.iloc[:2]) is not None
        restart = Restart(own_server, delay_s=1.0)
        try:
            started = time.monotonic()
            result = c.infer("fraud", X.iloc[:4])
            assert time.monotonic() - started > 0.5  # it did have to wait for the new server
        finally:
            restart.close()
    np.testing.assert_allclose(result.probabilities, pipeline.predict_proba(X.iloc[:4]), atol=ATOL)


def test_connection_options_reach_the_channel(server, model_repo):
    _, X = model_repo[1]["fraud"]
    options = ClientOptions(keepalive_time_s=30, keepalive_timeout_s=5, max_message_bytes=4096)
    with InferenceClient(server.grpc_target, options) as c:
        assert c.predict("fraud", X.iloc[:4]) is not None  # ~1 KB each way
        with pytest.raises(OnyxClientError) as exc:
            c.infer("fraud", X.iloc[:100])  # ~24 KB: refused by the client's own limit
    assert exc.value.status == "RESOURCE_EXHAUSTED"


def test_backoff_doubles_with_jitter_within_bounds():
    options = ClientOptions(retries=5, backoff_initial_s=0.1, backoff_max_s=0.3)
    policy = RetryPolicy(options, Deadline.after(None))
    delays = []
    for _ in range(options.retries + 1):
        policy.attempts += 1
        delays.append(policy.delay(grpc.StatusCode.UNAVAILABLE))
    caps = [0.1, 0.2, 0.3, 0.3, 0.3]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps)) and delays[-1] is None
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.DEADLINE_EXCEEDED):
        fresh = RetryPolicy(options, Deadline.after(None))
        fresh.attempts = 1
        assert fresh.delay(code) is None
    short = RetryPolicy(options, Deadline.after(0.01))
    short.attempts = 3  # would wait >= 0.15 s, more than the 0.01 s left
    assert short.delay(grpc.StatusCode.UNAVAILABLE) is None


def test_options_are_checked():
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        ClientOptions(tls_cert="client.pem")
    with pytest.raises(ValueError):
        ClientOptions(backoff_initial_s=2, backoff_max_s=1)
