"""Server CPU per request in-process (no network, no gRPC transport): a repository read with its
registry stages, requests through the servicer in bursts, process CPU time per request.

    python benchmarks/served/shadow_hotpath.py REPOSITORY [--requests 16000] [--burst 16]

Run it on shadow_overhead.py's WORK_DIR/shadow-repo-a (production only) and shadow-repo-b
(production + shadow) to see what mirroring and comparing add to onyxserve's own path.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.repository.stages import StageReader
from onyxserve.repository.store import registry_path
from onyxserve.server.dataplane import DataPlane
from onyxserve.server.grpc.servicer import InferenceServicer
from onyxserve.server.models.manager import ModelRepository


async def measure(repository: Path, requests: int, burst: int) -> None:
    repo = ModelRepository(repository, intra_op_threads=1, stage_reader=StageReader(registry_path(repository)))
    await repo.scan()
    dataplane = DataPlane(repo)
    dataplane.started = True
    servicer = InferenceServicer(dataplane)
    for name in sorted({m.name for m in repo.ready_models()}):
        width = len(repo.get(name).manifest.features)
        request = pb.ModelInferRequest(model_name=name)
        request.inputs.add(name="input", datatype="FP32", shape=[1, width])
        request.raw_input_contents.append(np.zeros((1, width), np.float32).tobytes())
        wire = request.SerializeToString()

        async def one(wire: bytes = wire) -> bytes:
            return (await servicer._infer(pb.ModelInferRequest.FromString(wire), None)).SerializeToString()

        async def bursts(n: int) -> None:
            for _ in range(n):
                await asyncio.gather(*(one() for _ in range(burst)))

        await bursts(200)  # warm-up
        start = time.process_time()
        await bursts(requests // burst)
        await asyncio.sleep(0.05)  # the shadow's last gather window, inside the measurement
        cpu = (time.process_time() - start) / (requests // burst * burst) * 1e6
        shadow = dataplane.shadow.target(name, repo.get(name))
        print(f"{repository.name} {name}: {cpu:.1f} us CPU/request, bursts of {burst}, "
              f"shadow {'version ' + shadow.version if shadow else 'none'}")
    await repo.close(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--requests", type=int, default=16_000)
    parser.add_argument("--burst", type=int, default=16)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(measure(args.repository, args.requests, args.burst))
    except ImportError:
        asyncio.run(measure(args.repository, args.requests, args.burst))


if __name__ == "__main__":
    main()
