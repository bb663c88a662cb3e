"""AsyncInferenceClient end to end against the real server: the same surface as the sync
client, awaited; concurrent calls on one channel; unix socket, TLS/mTLS, errors, retries."""

from __future__ import annotations

import asyncio
import inspect
import time

import grpc
import numpy as np
import pytest
from onyxserve.clients import AsyncInferenceClient, ClientOptions, InferenceClient, OnyxClientError

from tests.clients.conftest import Restart

ATOL = 1e-5


def public_methods(cls) -> set[str]:
    return {n for n, v in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


def test_twins_have_the_same_methods():
    assert public_methods(AsyncInferenceClient) == public_methods(InferenceClient)
    for name in public_methods(InferenceClient) - {"clear_cache"}:
        assert inspect.iscoroutinefunction(getattr(AsyncInferenceClient, name)), name
        sync_params = inspect.signature(getattr(InferenceClient, name)).parameters
        assert inspect.signature(getattr(AsyncInferenceClient, name)).parameters.keys() == sync_params.keys()


async def test_health_and_metadata(server):
    async with AsyncInferenceClient(server.grpc_target, ClientOptions(timeout_s=10)) as c:
        assert await c.is_server_live() and await c.is_server_ready()
        assert (await c.server_metadata()).name == "onyxserve"
        assert await c.is_model_ready("iris") and not await c.is_model_ready("nope")
        meta = await c.model_metadata("fraud")
        assert [(i.name, list(i.shape)) for i in meta.inputs] == [("input", [-1, 30])]
        assert (await c.model_config("price")).parameters["task"].string_value == "regression"
        assert {m.name for m in await c.repository_index(ready_only=True)} == {"fraud", "iris", "price"}
        assert [s.name for s in await c.model_statistics("iris")] == ["iris"]


async def test_inputs_equal_sklearn(server, model_repo):
    models = model_repo[1]
    fraud, X_fraud = models["fraud"]
    iris, X_iris = models["iris"]
    price, X_price = models["price"]
    frame = X_price.iloc[:40].copy()
    frame.iloc[[1, 2], frame.columns.get_loc("age")] = np.nan
    async with AsyncInferenceClient(server.grpc_target) as c:
        # concurrent calls share the channel; the first ones also fill the metadata cache
        numpy_result, frame_result, dict_result, (labels, probabilities) = await asyncio.gather(
            c.infer("fraud", X_fraud.iloc[:32].to_numpy()),
            c.infer("price", frame),
            c.infer("price", frame.iloc[:3].to_dict("records")),
            c.predict("iris", X_iris.iloc[:16]),
        )
    np.testing.assert_allclose(numpy_result.probabilities, fraud.predict_proba(X_fraud.iloc[:32]), atol=ATOL)
    np.testing.assert_array_equal(numpy_result.labels, fraud.predict(X_fraud.iloc[:32]))
    np.testing.assert_allclose(frame_result.values, price.predict(frame), rtol=1e-5, atol=ATOL)
    np.testing.assert_allclose(dict_result.values, price.predict(frame.iloc[:3]), rtol=1e-5, atol=ATOL)
    assert list(labels) == list(iris.predict(X_iris.iloc[:16]))
    np.testing.assert_allclose(probabilities, iris.predict_proba(X_iris.iloc[:16]), atol=ATOL)


async def test_errors_are_one_clear_line(server, model_repo):
    _, X = model_repo[1]["price"]
    async with AsyncInferenceClient(server.grpc_target) as c:
        with pytest.raises(OnyxClientError) as exc:
            await c.model_metadata("nope")
        assert exc.value.code == grpc.StatusCode.NOT_FOUND and "nope" in exc.value.message
        assert exc.value.__suppress_context__
        with pytest.raises(OnyxClientError, match=r"lacks feature \['area'\]"):
            await c.infer("price", X.drop(columns=["area"]))


async def test_wrong_target_is_unavailable_after_bounded_retries():
    options = ClientOptions(retries=2, backoff_initial_s=0.05, backoff_max_s=0.2)
    started = time.monotonic()
    async with AsyncInferenceClient("127.0.0.1:1", options) as c:
        with pytest.raises(OnyxClientError) as exc:
            await c.is_server_live()
    assert exc.value.status == "UNAVAILABLE" and "3 attempts" in exc.value.message
    assert time.monotonic() - started < 5


async def test_deadline_bounds_the_retries():
    options = ClientOptions(retries=1000, backoff_initial_s=0.05, backoff_max_s=0.1, timeout_s=0.8)
    started = time.monotonic()
    async with AsyncInferenceClient("127.0.0.1:1", options) as c:
        with pytest.raises(OnyxClientError) as exc:
            await c.is_server_ready()
    assert exc.value.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    assert time.monotonic() - started < 2


async def test_unix_socket(uds_server, uds_path, model_repo):
    iris, X = model_repo[1]["iris"]
    async with AsyncInferenceClient(f"unix://{uds_path}") as c:
        labels, _ = await c.predict("iris", X.iloc[:5])
    assert list(labels) == list(iris.predict(X.iloc[:5]))


async def test_tls_and_mutual_tls(tls_server, mtls_server, pki):
    async with AsyncInferenceClient(tls_server.grpc_target, ClientOptions(tls_ca=pki.ca)) as c:
        assert await c.is_server_ready()
    async with AsyncInferenceClient(tls_server.grpc_target, ClientOptions(tls=True, retries=1)) as c:
        with pytest.raises(OnyxClientError) as exc:
            await c.is_server_ready(timeout=5)
        assert exc.value.status == "UNAVAILABLE"
    mutual = ClientOptions(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key)
    async with AsyncInferenceClient(mtls_server.grpc_target, mutual) as c:
        assert await c.is_server_ready()
    async with AsyncInferenceClient(mtls_server.grpc_target, ClientOptions(tls_ca=pki.ca, retries=1)) as c:
        with pytest.raises(OnyxClientError) as exc:
            await c.is_server_ready(timeout=5)
        assert exc.value.status == "UNAVAILABLE"


async def test_retries_across_a_server_restart(own_server, model_repo):
    price, X = model_repo[1]["price"]
    options = ClientOptions(retries=60, backoff_initial_s=0.05, backoff_max_s=0.25, timeout_s=12)
    async with AsyncInferenceClient(own_server.grpc_target, options) as c:
        assert await c.is_server_ready()
        restart = Restart(own_server, delay_s=1.0)
        try:
            started = time.monotonic()
            values = await c.predict("price", X.iloc[:6])
            assert time.monotonic() - started > 0.5
        finally:
            restart.close()
    np.testing.assert_allclose(values, price.predict(X.iloc[:6]), rtol=1e-5, atol=ATOL)
