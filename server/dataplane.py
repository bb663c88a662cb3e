"""The protocol-agnostic server: what gRPC and REST both do, in one place.

Transports decode their wire format into ``Tensor`` lists and encode ``InferResult`` back;
everything else (model lookup, validation, batching, outcome metrics, repository control,
stages, drift and shadow reports) happens here. A transport calls only this class: never the
repository, the shadow mirror or the drift monitors behind it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onyxserve.server.drift.report import build_report
from onyxserve.server.errors import FeatureDisabled, InvalidInput, OnyxError, ShuttingDown
from onyxserve.server.models.manager import ModelRepository, VersionState
from onyxserve.server.models.served import ServedModel
from onyxserve.server.models.variants import NO_ROUTING, Routing
from onyxserve.server.shadow.mirror import ShadowMirror
from onyxserve.server.tensors import Tensor

import onyxserve

SERVER_NAME = "onyxserve"
EXTENSIONS = ("model_repository", "statistics", "model_configuration", "binary_tensor_data", "health")


@dataclass(frozen=True)
class InferResult:
    model: ServedModel
    outputs: dict[str, np.ndarray]  # requested outputs only, in the model's output order
    # the production variant the request was routed to (None: it named a version, or the model
    # has no variants); the response's "variant" parameter, model.version its version
    variant: str | None = None


@dataclass(frozen=True)
class ModelConfigInfo:
    """What ModelConfig reports beyond the version's own config: the roles it serves in."""

    model: ServedModel
    stages: tuple[str, ...]  # registry stages this version serves as, e.g. ("production",)
    shadow_version: str | None  # production only: the version its answered requests are mirrored to
    variant: str | None = None  # the production variant it serves as
    variant_share: float | None = None  # and that variant's share of requests without a version, 0..1


class DataPlane:
    def __init__(
        self, repository: ModelRepository, *, shadow_max_in_flight: int = 64, shadow_gather_ms: float = 2.0
    ) -> None:
        self.repository = repository
        self.shadow = ShadowMirror(repository, shadow_max_in_flight, shadow_gather_ms / 1e3)
        self.draining = False  # shutting down: not ready, still answering
        self.refusing = False  # shutting down: new requests are refused
        self.started = False  # the first repository scan finished

    # ---- health and metadata ----

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.started and not self.draining

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        return SERVER_NAME, onyxserve.__version__, EXTENSIONS

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.repository.get(name, version)
        except OnyxError:
            return False
        return not self.draining

    def model(self, name: str, version: str = "") -> ServedModel:
        return self.repository.get(name, version)

    def model_versions(self, name: str) -> list[str]:
        return self.repository.versions(name)

    def model_config(self, name: str, version: str = "") -> ModelConfigInfo:
        """The version and the registry roles it serves in (ModelConfig)."""
        model = self.repository.get(name, version)
        stages = self.repository.stages_of(model.name, model.version)
        shadow = self.shadow.target(model.name, model) if "production" in stages else None
        variant = self.repository.variant_of(model.name, model.version)
        return ModelConfigInfo(
            model, stages, None if shadow is None else shadow.version,
            *((variant[0].name, variant[1]) if variant is not None else ()),
        )

    def statistics_models(self, name: str = "", version: str = "") -> list[ServedModel]:
        """The versions ModelStatistics reports on: the one asked for, or every serving one."""
        if name:
            return [self.repository.get(name, version)]
        return self.repository.ready_models()

    # ---- the repository extension ----

    def repository_index(self) -> list[VersionState]:
        return self.repository.index()

    async def load_model(self, name: str) -> None:
        """Explicit load (or reload); RepositoryError says why when nothing of it serves."""
        await self.repository.load(name)

    async def unload_model(self, name: str) -> None:
        await self.repository.unload(name)

    # ---- inference ----

    async def infer(
        self,
        name: str,
        version: str,
        tensors: Sequence[Tensor],
        requested: Sequence[str] = (),
        timeout_s: float | None = None,
        routing: Routing = NO_ROUTING,
    ) -> InferResult:
        arrived = time.perf_counter()
        if self.refusing:
            raise ShuttingDown("server is shutting down")
        # without a version: one of the production variants, by routing key, name or weight
        model, variant = self.repository.route(name, version, routing)
        metrics, stats = model.metrics.requests(variant), model.batcher.stats
        # requests production answers (no explicit version) are mirrored to a shadow version
        shadow = None if version else self.shadow.target(name, model)
        try:
            if requested:
                unknown = [r for r in requested if r not in model.output_types]
                if unknown:
                    raise InvalidInput(f"unknown output {unknown}; model '{name}' has {sorted(model.output_types)}")
            if shadow is None:
                outputs = await model.infer(tensors, timeout_s)
            else:
                block = model.decoder.decode(tensors)  # decoded once, reused by the shadow
                outputs = await model.infer_block(block, timeout_s)
        except Exception as exc:
            stats.fail_count += 1
            stats.fail_ns += int((time.perf_counter() - arrived) * 1e9)
            metrics.failed(exc.status.name if isinstance(exc, OnyxError) else "INTERNAL")
            raise
        every_output = outputs  # the shadow compares labels and probabilities, whatever was requested
        if requested:
            outputs = {k: outputs[k] for k in requested}
        elapsed = time.perf_counter() - arrived
        metrics.ok.inc()
        metrics.request_seconds.observe(elapsed)
        stats.success_count += 1
        stats.success_ns += int(elapsed * 1e9)
        stats.last_inference_ms = int(time.time() * 1000)
        if shadow is not None:  # after production answered; returns at once, never raises
            self.shadow.mirror(model, shadow, block, tensors, every_output)
        return InferResult(model, outputs, variant)

    # ---- reports ----

    def shadow_report(self, name: str) -> dict[str, Any]:
        """How ``name``'s shadow version compares with production on mirrored traffic."""
        return self.shadow.report(name)

    def drift_report(
        self, name: str, version: str = "", psi_threshold: float | str | None = None
    ) -> dict[str, Any]:
        """The version's drift report; ``psi_threshold`` (a number, or its text as a query
        parameter gives it) overrides the server's setting. Checked after the model, so an
        unknown model or drift being off is what a client hears first."""
        model = self.repository.get(name, version)
        if model.drift is None:
            raise FeatureDisabled("drift monitoring is off on this server (setting drift / ONYXSERVE_DRIFT)")
        try:
            threshold = float(psi_threshold) if psi_threshold is not None else None
        except ValueError:
            raise InvalidInput(f"psi_threshold must be a number, got {psi_threshold!r}") from None
        return build_report(model.drift, threshold)

