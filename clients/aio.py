"""``AsyncInferenceClient``: the asyncio twin of ``InferenceClient`` (same methods, awaited)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc

from ._base import ClientBase, Prediction
from .errors import from_rpc_error
from .inputs import InferData, build_request
from .options import ClientOptions
from .outputs import InferResult
from .retry import RetryPolicy
from .schema import ModelSchema


class AsyncInferenceClient(ClientBase):
    """A V2 inference client over one ``grpc.aio`` channel; create it inside the running loop.

    ``target`` is ``host:port`` or ``unix:///path/to.sock``; TLS, keepalive, message size,
    deadline and retries come from ``options``. Every call takes ``timeout`` (seconds, retries
    included; default ``options.timeout_s``) and raises only ``OnyxClientError``. Use it as an
    async context manager, or await ``close()``.
    """

    def __init__(self, target: str, options: ClientOptions | None = None) -> None:
        super().__init__(target, options)
        credentials = self._credentials()
        channel_options = self.options.channel_options()
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=channel_options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    async def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        """One unary call, retried with backoff while the server is UNAVAILABLE."""
        rpc = getattr(self._stub, method)
        policy = RetryPolicy(self.options, self._deadline(timeout))
        while True:
            policy.attempts += 1
            try:
                return await rpc(request, timeout=policy.deadline.remaining())
            except grpc.RpcError as exc:  # grpc.aio.AioRpcError
                error = exc
            wait = policy.delay(error.code())
            if wait is None:
                raise from_rpc_error(error, self.target, policy.attempts, self.options.uses_tls) from None
            await asyncio.sleep(wait)

    # health and metadata

    async def is_server_live(self, timeout: float | None = None) -> bool:
        response = await self._call("ServerLive", pb.ServerLiveRequest(), timeout)
        return response.live

    async def is_server_ready(self, timeout: float | None = None) -> bool:
        response = await self._call("ServerReady", pb.ServerReadyRequest(), timeout)
        return response.ready

    async def is_model_ready(self, model: str, model_version: str = "", timeout: float | None = None) -> bool:
        request = pb.ModelReadyRequest(name=model, version=model_version)
        response = await self._call("ModelReady", request, timeout)
        return response.ready

    async def server_metadata(self, timeout: float | None = None) -> pb.ServerMetadataResponse:
        return await self._call("ServerMetadata", pb.ServerMetadataRequest(), timeout)

    async def model_metadata(
        self, model: str, model_version: str = "", timeout: float | None = None
    ) -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(name=model, version=model_version)
        return await self._call("ModelMetadata", request, timeout)

    async def model_config(
        self, model: str, model_version: str = "", timeout: float | None = None
    ) -> pb.ModelConfig:
        request = pb.ModelConfigRequest(name=model, version=model_version)
        return (await self._call("ModelConfig", request, timeout)).config

    async def model_statistics(
        self, model: str = "", model_version: str = "", timeout: float | None = None
    ) -> list[pb.ModelStatistics]:
        """Statistics of one model (version), or of every ready model when ``model`` is empty."""
        request = pb.ModelStatisticsRequest(name=model, version=model_version)
        return list((await self._call("ModelStatistics", request, timeout)).model_stats)

    async def repository_index(
        self, ready_only: bool = False, timeout: float | None = None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        response = await self._call("RepositoryIndex", pb.RepositoryIndexRequest(ready=ready_only), timeout)
        return list(response.models)

    async def load_model(self, model: str, timeout: float | None = None) -> None:
        self.clear_cache(model)
        await self._call("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name=model), timeout)

    async def unload_model(self, model: str, timeout: float | None = None) -> None:
        self.clear_cache(model)
        await self._call("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=model), timeout)

    # inference

    async def schema(self, model: str, model_version: str = "", timeout: float | None = None) -> ModelSchema:
        """The model's features and outputs, fetched once per (model, version) and cached."""
        schema = self._schemas.get(model, model_version)
        if schema is None:
            meta = await self.model_metadata(model, model_version, timeout)
            config = None
            if self._needs_config(meta):
                request = pb.ModelConfigRequest(name=model, version=model_version)
                config = await self._call("ModelConfig", request, timeout)
            schema = self._schema(meta, config)
            self._schemas.put(model, model_version, schema)
        return schema

    async def infer(
        self,
        model: str,
        data: InferData,
        *,
        model_version: str = "",
        outputs: Sequence[str] = (),
        request_id: str = "",
        timeout: float | None = None,
        routing_key: str | int | None = None,
        variant: str | None = None,
    ) -> InferResult:
        """Score ``data``; see ``InferenceClient.infer`` for the accepted forms."""
        deadline = self._deadline(timeout)
        schema = await self.schema(model, model_version, deadline.remaining())
        request = build_request(schema, data, version=model_version, outputs=outputs, request_id=request_id,
                                routing_key=routing_key, variant=variant)
        return InferResult(await self._call("ModelInfer", request, deadline.remaining()))

    async def predict(
        self, model: str, data: InferData, *, model_version: str = "", timeout: float | None = None
    ) -> Prediction:
        """``(labels, probabilities)`` for a classifier, ``values`` for a regressor."""
        return self._prediction(await self.infer(model, data, model_version=model_version, timeout=timeout))

    # lifetime

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
