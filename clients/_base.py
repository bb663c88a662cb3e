"""What the sync and asyncio clients share: target and options, the schema cache, and turning
results into predictions. Each twin adds only its transport (a channel and a retry loop)."""

from __future__ import annotations

import grpc
import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb

from .errors import OnyxClientError
from .options import ClientOptions
from .outputs import InferResult
from .retry import Deadline
from .schema import ModelSchema, SchemaCache

Prediction = tuple[np.ndarray, np.ndarray] | np.ndarray


class ClientBase:
    def __init__(self, target: str, options: ClientOptions | None = None) -> None:
        self.target = target
        self.options = options or ClientOptions()
        self._schemas = SchemaCache()

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline.after(self.options.timeout_s if timeout is None else timeout)

    def _credentials(self) -> grpc.ChannelCredentials | None:
        return self.options.credentials()

    def clear_cache(self, model: str | None = None) -> None:
        """Forget the cached model metadata (of one model, or all); the next infer fetches it."""
        self._schemas.forget(model)

    @staticmethod
    def _schema(meta: pb.ModelMetadataResponse, config: pb.ModelConfigResponse | None) -> ModelSchema:
        return ModelSchema.from_messages(meta, config.config if config is not None else None)

    @staticmethod
    def _needs_config(meta: pb.ModelMetadataResponse) -> bool:
        """Only a single [N, F] input hides the feature names; ModelConfig lists them."""
        return len(meta.inputs) == 1 and len(meta.inputs[0].shape) == 2

    @staticmethod
    def _prediction(result: InferResult) -> Prediction:
        if result.values is not None:
            return result.values
        if result.labels is not None and result.probabilities is not None:
            return result.labels, result.probabilities
        raise OnyxClientError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"model '{result.model_name}' answered {result.output_names}; predict expects "
            "'label' + 'probabilities' or 'value' (use infer)",
        )

    def __repr__(self) -> str:
        tls = ", tls" if self.options.uses_tls else ""
        return f"{type(self).__name__}({self.target!r}{tls})"
