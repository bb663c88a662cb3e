"""Time onyxserve's own per-request path in-process, without the network or gRPC: decode the
ModelInferRequest, batch, normalize, run ONNX Runtime, encode the response, update metrics.

    python benchmarks/served/hotpath.py MODEL_REPOSITORY [--requests 20000] [--no-drift] [--datatype FP64]

Prints microseconds per request for sequential requests and for 16 concurrent ones (which the
batcher gathers into batches). It isolates what onyxserve adds on top of grpc.aio's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.server.dataplane import DataPlane
from onyxserve.server.drift.monitor import DriftSettings
from onyxserve.server.grpc.servicer import InferenceServicer
from onyxserve.server.models.manager import ModelRepository


async def measure(repository: str, requests: int, drift: bool = True, datatype: str = "FP32") -> None:
    repo = ModelRepository(repository, intra_op_threads=1, drift=DriftSettings(enabled=drift))
    await repo.scan()
    dataplane = DataPlane(repo)
    dataplane.started = True
    servicer = InferenceServicer(dataplane)
    for model in repo.ready_models():
        width = len(model.manifest.features)
        request = pb.ModelInferRequest(model_name=model.name)
        dtype = np.float32 if datatype == "FP32" else np.float64
        request.inputs.add(name="input", datatype=datatype, shape=[1, width])
        request.raw_input_contents.append(np.random.default_rng(0).normal(size=(1, width)).astype(dtype).tobytes())
        wire = request.SerializeToString()

        async def one() -> bytes:
            response = await servicer._infer(pb.ModelInferRequest.FromString(wire), None)
            return response.SerializeToString()

        for _ in range(1000):  # warm-up
            await one()
        start = time.perf_counter()
        for _ in range(requests):
            await one()
        sequential = (time.perf_counter() - start) / requests * 1e6
        before = model.batcher.stats.execution_count
        start = time.perf_counter()
        for _ in range(requests // 16):
            await asyncio.gather(*(one() for _ in range(16)))
        concurrent = (time.perf_counter() - start) / (requests // 16 * 16) * 1e6
        batches = model.batcher.stats.execution_count - before
        print(f"{model.name}/{model.version}: {sequential:.1f} us/request sequential, "
              f"{concurrent:.1f} us/request at 16 concurrent ({requests // 16 * 16 / batches:.1f} rows/batch)")
    await repo.close(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--no-drift", dest="drift", action="store_false", help="drift counting off")
    parser.add_argument("--datatype", choices=["FP32", "FP64"], default="FP32", help="of the [1, F] request tensor")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(measure(args.repository, args.requests, args.drift, args.datatype))
    except ImportError:
        asyncio.run(measure(args.repository, args.requests, args.drift, args.datatype))


if __name__ == "__main__":
    main()
