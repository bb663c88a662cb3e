"""The V2 GRPCInferenceService: a thin translation between protobuf and the dataplane.

Errors are mapped to gRPC status in one place, ``_map_errors`` (the stream answers them as
``error_message``), both through ``errors.client_error``: an ``OnyxError`` becomes its own
status with its message (logged without a traceback); anything else is INTERNAL with a generic
message, its traceback in the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.server.dataplane import DataPlane
from onyxserve.server.errors import client_error
from onyxserve.server.grpc.codec import decode_grpc_inputs, decode_routing, encode_outputs
from onyxserve.server.models.served import MISSING_VALUE, PLATFORM, ServedModel

log = logging.getLogger(__name__)

_V2_TO_CONFIG_TYPE = {"FP32": pb.TYPE_FP32, "FP64": pb.TYPE_FP64, "INT64": pb.TYPE_INT64, "BYTES": pb.TYPE_STRING}


def _map_errors(method: Callable) -> Callable:
    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except Exception as exc:  # CancelledError is a BaseException: it passes through
            error = client_error(exc, log, method.__name__)
            await context.abort(error.status, error.message)

    return wrapper


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    @_map_errors
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @_map_errors
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @_map_errors
    async def ServerMetadata(self, request, context):
        name, version, extensions = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions)

    @_map_errors
    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(request.name, request.version))

    @_map_errors
    async def ModelMetadata(self, request, context):
        model = self.dataplane.model(request.name, request.version)
        response = pb.ModelMetadataResponse(
            name=model.name, versions=self.dataplane.model_versions(model.name), platform=PLATFORM
        )
        for t in model.inputs:
            response.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        for t in model.outputs:
            response.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        return response

    async def _infer(self, request: pb.ModelInferRequest, timeout_s: float | None) -> pb.ModelInferResponse:
        tensors = decode_grpc_inputs(request)
        requested = [o.name for o in request.outputs]
        result = await self.dataplane.infer(
            request.model_name, request.model_version, tensors, requested, timeout_s, decode_routing(request)
        )
        response = pb.ModelInferResponse(
            model_name=result.model.name, model_version=result.model.version, id=request.id
        )
        encode_outputs(result, response)
        return response

    @_map_errors
    async def ModelInfer(self, request, context):
        return await self._infer(request, context.time_remaining())

    async def ModelStreamInfer(self, request_iterator, context) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request runs as it arrives; responses go out as they finish (carrying the
        request id), and a failed request answers with ``error_message`` on the stream."""
        done: asyncio.Queue = asyncio.Queue()
        pending: set[asyncio.Task] = set()

        async def one(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            try:
                return pb.ModelStreamInferResponse(infer_response=await self._infer(request, None))
            except Exception as exc:
                error = client_error(exc, log, "ModelStreamInfer")
                message = f"{error.status.name}: {error.message}"
                if error is not exc:  # internal: answered without naming the request, as always
                    return pb.ModelStreamInferResponse(error_message=message)
                named = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
                return pb.ModelStreamInferResponse(error_message=message, infer_response=named)

        def finished(task: asyncio.Task) -> None:
            pending.discard(task)
            if not task.cancelled():  # cancelled only when the stream itself is going away
                done.put_nowait(task.result())

        async def read() -> None:
            async for request in request_iterator:
                task = asyncio.create_task(one(request))
                pending.add(task)
                task.add_done_callback(finished)
            await done.put(None)

        reader = asyncio.create_task(read())
        finished_reading = False
        try:
            while True:
                item = await done.get()
                if item is None:
                    finished_reading = True
                else:
                    yield item
                if finished_reading and not pending and done.empty():
                    break
        finally:
            reader.cancel()
            for task in pending:
                task.cancel()

    @_map_errors
    async def ModelConfig(self, request, context):
        info = self.dataplane.model_config(request.name, request.version)
        model, config = info.model, info.model.config
        msg = pb.ModelConfig(
            name=model.name, platform=PLATFORM, backend="onyxserve", max_batch_size=config.max_batch_size
        )
        for t in model.inputs:
            msg.input.add(name=t.name, data_type=_V2_TO_CONFIG_TYPE[t.datatype], dims=t.shape[1:] or (1,))
        for t in model.outputs:
            msg.output.add(name=t.name, data_type=_V2_TO_CONFIG_TYPE[t.datatype], dims=t.shape[1:] or (1,))
        if config.max_batch_size > 0:
            msg.dynamic_batching.max_queue_delay_microseconds = config.max_queue_delay_microseconds
            msg.dynamic_batching.default_queue_policy.max_queue_size = config.max_queue_size
            msg.dynamic_batching.default_queue_policy.default_timeout_microseconds = (
                config.default_timeout_microseconds
            )
        msg.parameters["task"].string_value = model.manifest.task
        msg.parameters["features"].string_value = ",".join(model.manifest.feature_names)
        if info.stages:  # the registry stages this version serves as, e.g. "production"
            msg.parameters["stage"].string_value = ",".join(info.stages)
        if info.shadow_version is not None:  # requests production answers are mirrored to this version
            msg.parameters["shadow_version"].string_value = info.shadow_version
        for datatype in sorted({t.datatype for t in model.inputs} & MISSING_VALUE.keys()):
            msg.parameters[f"missing_{datatype.lower()}"].string_value = MISSING_VALUE[datatype]
        if info.variant is not None:  # the production variant it serves as, and its share in percent
            msg.parameters["variant"].string_value = info.variant
            msg.parameters["variant_share"].string_value = f"{100 * info.variant_share:.6g}"
        if model.threshold is not None:  # binary: the label is positive iff P(positive) >= it
            msg.parameters["threshold"].string_value = repr(model.threshold)
        return pb.ModelConfigResponse(config=msg)

    @_map_errors
    async def ModelStatistics(self, request, context):
        response = pb.ModelStatisticsResponse()
        for model in self.dataplane.statistics_models(request.name, request.version):
            response.model_stats.append(_statistics(model))
        return response

    @_map_errors
    async def RepositoryIndex(self, request, context):
        response = pb.RepositoryIndexResponse()
        for s in self.dataplane.repository_index():
            if request.ready and s.state != "READY":
                continue
            response.models.add(name=s.name, version=s.version, state=s.state, reason=s.reason)
        return response

    @_map_errors
    async def RepositoryModelLoad(self, request, context):
        await self.dataplane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_map_errors
    async def RepositoryModelUnload(self, request, context):
        await self.dataplane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _statistics(model: ServedModel) -> pb.ModelStatistics:
    s = model.batcher.stats
    duration = pb.StatisticDuration
    return pb.ModelStatistics(
        name=model.name,
        version=model.version,
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
        inference_stats=pb.InferStatistics(
            success=duration(count=s.success_count, ns=s.success_ns),
            fail=duration(count=s.fail_count, ns=s.fail_ns),
            queue=duration(count=s.queue_count, ns=s.queue_ns),
            compute_input=duration(count=s.compute_count, ns=s.compute_input_ns),
            compute_infer=duration(count=s.compute_count, ns=s.compute_infer_ns),
            compute_output=duration(count=s.compute_count, ns=s.compute_output_ns),
        ),
    )
