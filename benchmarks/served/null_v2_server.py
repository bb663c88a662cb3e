"""A V2 gRPC server that answers every ModelInfer with one fixed response, for measuring the load
harness itself (its ceiling and its CPU per request) with no model in the way.

Usage: ``python benchmarks/served/null_v2_server.py [--port 18201] [--width 30] [--seconds 300]``

It declares model ``null`` with input ``input`` FP32 ``[-1, WIDTH]`` and outputs ``label`` /
``probabilities`` (like onyxserve's), in ModelMetadata and in Triton's ModelConfig (max_batch_size
32), and exits after ``--seconds`` so it can never be left behind.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb


def _identity(data: bytes) -> bytes:
    return data


def build_response() -> bytes:
    resp = pb.ModelInferResponse(model_name="null", model_version="1")
    resp.outputs.add(name="label", datatype="INT64", shape=[1])
    resp.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    resp.raw_output_contents.extend([np.int64([0]).tobytes(), np.float32([[0.9, 0.1]]).tobytes()])
    return resp.SerializeToString()


async def serve(port: int, width: int, seconds: float) -> None:
    answer = build_response()
    T = pb.ModelMetadataResponse.TensorMetadata
    metadata = pb.ModelMetadataResponse(
        name="null",
        versions=["1"],
        platform="null",
        inputs=[T(name="input", datatype="FP32", shape=[-1, width])],
        outputs=[
            T(name="label", datatype="INT64", shape=[-1]),
            T(name="probabilities", datatype="FP32", shape=[-1, 2]),
        ],
    ).SerializeToString()

    # Triton's ModelConfig too, so perf_analyzer can load it as well (a cross-check of the harness)
    config = pb.ModelConfigResponse(
        config=pb.ModelConfig(
            name="null",
            platform="null",
            max_batch_size=32,
            input=[pb.ModelInput(name="input", data_type=pb.TYPE_FP32, dims=[width])],
            output=[
                pb.ModelOutput(name="label", data_type=pb.TYPE_INT64, dims=[1]),
                pb.ModelOutput(name="probabilities", data_type=pb.TYPE_FP32, dims=[2]),
            ],
        )
    ).SerializeToString()

    async def model_config(request: bytes, context) -> bytes:
        return config

    async def infer(request: bytes, context) -> bytes:  # no parsing: the cheapest possible answer
        return answer

    async def model_metadata(request: bytes, context) -> bytes:
        return metadata

    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(infer, _identity, _identity),
        "ModelMetadata": grpc.unary_unary_rpc_method_handler(model_metadata, _identity, _identity),
        "ModelConfig": grpc.unary_unary_rpc_method_handler(model_config, _identity, _identity),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"null V2 server on 127.0.0.1:{port} for {seconds:g} s", flush=True)
    await asyncio.sleep(seconds)
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18201)
    parser.add_argument("--width", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.width, args.seconds))


if __name__ == "__main__":
    main()
