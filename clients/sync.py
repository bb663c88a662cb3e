"""``InferenceClient``: the blocking V2 gRPC client (``AsyncInferenceClient`` is its asyncio twin)."""

from __future__ import annotations

import time
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


class InferenceClient(ClientBase):
    """A V2 inference client over one gRPC channel.

    ``target`` is ``host:port`` or ``unix:///path/to.sock``; TLS, keepalive, message size,
    deadline and retries come from ``options``. Every call takes ``timeout`` (seconds, retries
    included; default ``options.timeout_s``) and raises only ``OnyxClientError``. Use it as a
    context manager, or call ``close()``.
    """

    def __init__(self, target: str, options: ClientOptions | None = None) -> None:
        super().__init__(target, options)
        credentials = self._credentials()
        channel_options = self.options.channel_options()
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        """One unary call, retried with backoff while the server is UNAVAILABLE."""
        rpc = getattr(self._stub, method)
        policy = RetryPolicy(self.options, self._deadline(timeout))
        while True:
            policy.attempts += 1
            try:
                return rpc(request, timeout=policy.deadline.remaining())
            except grpc.RpcError as exc:
                error = exc
            wait = policy.delay(error.code())
            if wait is None:
                raise from_rpc_error(error, self.target, policy.attempts, self.options.uses_tls) from None
            time.sleep(wait)

    # health and metadata

    def is_server_live(self, timeout: float | None = None) -> bool:
        return self._call("ServerLive", pb.ServerLiveRequest(), timeout).live

    def is_server_ready(self, timeout: float | None = None) -> bool:
        return self._call("ServerReady", pb.ServerReadyRequest(), timeout).ready

    def is_model_ready(self, model: str, model_version: str = "", timeout: float | None = None) -> bool:
        response = self._call("ModelReady", pb.ModelReadyRequest(name=model, version=model_version), timeout)
        return response.ready

    def server_metadata(self, timeout: float | None = None) -> pb.ServerMetadataResponse:
        return self._call("ServerMetadata", pb.ServerMetadataRequest(), timeout)

    def model_metadata(
        self, model: str, model_version: str = "", timeout: float | None = None
    ) -> pb.ModelMetadataResponse:
        request = pb.ModelMetadataRequest(name=model, version=model_version)
        return self._call("ModelMetadata", request, timeout)

    def model_config(
        self, model: str, model_version: str = "", timeout: float | None = None
    ) -> pb.ModelConfig:
        request = pb.ModelConfigRequest(name=model, version=model_version)
        return self._call("ModelConfig", request, timeout).config

    def model_statistics(
        self, model: str = "", model_version: str = "", timeout: float | None = None
    ) -> list[pb.ModelStatistics]:
        """Statistics of one model (version), or of every ready model when ``model`` is empty."""
        request = pb.ModelStatisticsRequest(name=model, version=model_version)
        return list(self._call("ModelStatistics", request, timeout).model_stats)

    def repository_index(
        self, ready_only: bool = False, timeout: float | None = None
    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        response = self._call("RepositoryIndex", pb.RepositoryIndexRequest(ready=ready_only), timeout)
        return list(response.models)

    def load_model(self, model: str, timeout: float | None = None) -> None:
        self.clear_cache(model)
        self._call("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name=model), timeout)

    def unload_model(self, model: str, timeout: float | None = None) -> None:
        self.clear_cache(model)
        self._call("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=model), timeout)

    # inference

    def schema(self, model: str, model_version: str = "", timeout: float | None = None) -> ModelSchema:
        """The model's features and outputs, fetched once per (model, version) and cached."""
        schema = self._schemas.get(model, model_version)
        if schema is None:
            meta = self.model_metadata(model, model_version, timeout)
            config = None
            if self._needs_config(meta):
                request = pb.ModelConfigRequest(name=model, version=model_version)
                config = self._call("ModelConfig", request, timeout)
            schema = self._schema(meta, config)
            self._schemas.put(model, model_version, schema)
        return schema

    def infer(
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
        """Score ``data``: a numpy array ``[N, F]`` (features in the model's order), a pandas
        DataFrame (columns matched to features by name; extra columns ignored), a dict of feature
        values (one row, or one list per feature) or a list of such dicts. ``outputs`` limits the
        outputs returned (default: all). Without ``model_version`` the server picks one of the
        model's production variants: the same ``routing_key`` always the same one, or the one
        ``variant`` names; ``InferResult.variant`` says which answered."""
        deadline = self._deadline(timeout)
        schema = self.schema(model, model_version, deadline.remaining())
        request = build_request(schema, data, version=model_version, outputs=outputs, request_id=request_id,
                                routing_key=routing_key, variant=variant)
        return InferResult(self._call("ModelInfer", request, deadline.remaining()))

    def predict(
        self, model: str, data: InferData, *, model_version: str = "", timeout: float | None = None
    ) -> Prediction:
        """``(labels, probabilities)`` for a classifier, ``values`` for a regressor."""
        return self._prediction(self.infer(model, data, model_version=model_version, timeout=timeout))

    # lifetime

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
