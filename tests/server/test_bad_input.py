"""Every kind of bad input gets the right status and a message naming what is wrong, and the
server keeps serving afterwards."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.protos import v2bytes


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        yield pb_grpc.GRPCInferenceServiceStub(ch)


def matrix_request(rows: np.ndarray, model: str = "fraud", name: str = "input", datatype: str = "FP32",
                   shape=None, raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=list(shape if shape is not None else rows.shape))
    request.raw_input_contents.append(raw if raw is not None else rows.astype(np.float32).tobytes())
    return request


def price_request(city: bytes | None = None, drop: str | None = None, age: float = 10.0) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="price")
    for name, value in (("area", 50.0), ("rooms", 2.0), ("age", age)):
        if name != drop:
            request.inputs.add(name=name, datatype="FP64", shape=[1])
            request.raw_input_contents.append(np.float64(value).tobytes())
    if drop != "city":
        request.inputs.add(name="city", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(city if city is not None else v2bytes.encode(["oslo"]))
    return request


def expect(stub, request, code, *words):
    with pytest.raises(grpc.RpcError) as exc:
        stub.ModelInfer(request, timeout=10)
    assert exc.value.code() == code, exc.value.details()
    for word in words:
        assert word in exc.value.details(), exc.value.details()
    return exc.value.details()


ROW = np.zeros((1, 30), dtype=np.float32)
IA = grpc.StatusCode.INVALID_ARGUMENT

CASES = {
    "unknown model": (lambda: matrix_request(ROW, model="ghost"), grpc.StatusCode.NOT_FOUND, ["ghost"]),
    "unknown version": (lambda: pb.ModelInferRequest(model_name="fraud", model_version="9",
                                                     inputs=matrix_request(ROW).inputs,
                                                     raw_input_contents=[ROW.tobytes()]),
                        grpc.StatusCode.NOT_FOUND, ["'9'"]),
    "wrong input name": (lambda: matrix_request(ROW, model="price", name="colour", datatype="BYTES", shape=[1],
                                                raw=v2bytes.encode(["x"])), IA, ["colour"]),
    "wrong dtype": (lambda: matrix_request(ROW, datatype="INT32", raw=ROW.astype(np.int32).tobytes()), IA,
                    ["input", "INT32"]),
    "wrong feature count": (lambda: matrix_request(np.zeros((1, 29))), IA, ["input", "[1, 29]", "30"]),
    "truncated raw contents": (lambda: matrix_request(ROW, raw=ROW.tobytes()[:-3]), IA, ["input", "117 bytes"]),
    "raw count mismatch": (lambda: pb.ModelInferRequest(model_name="fraud", inputs=matrix_request(ROW).inputs,
                                                        raw_input_contents=[ROW.tobytes(), b"x"]),
                           IA, ["raw_input_contents", "2 entries"]),
    "missing feature": (lambda: price_request(drop="rooms"), IA, ["rooms"]),
    "nan without imputer": (lambda: matrix_request(np.full((1, 30), np.nan)), IA, ["Time", "NaN"]),
    "inf": (lambda: matrix_request(np.full((1, 30), np.inf)), IA, ["Time", "infinite"]),
    "unknown category": (lambda: price_request(city=v2bytes.encode(["atlantis"])), IA, ["city", "atlantis"]),
    "malformed bytes": (lambda: price_request(city=struct.pack("<I", 50) + b"osl"), IA, ["city"]),
    "bytes element count": (lambda: price_request(city=v2bytes.encode(["oslo", "lima"])), IA, ["city"]),
    "bytes for numeric": (lambda: matrix_request(ROW, model="price", name="area", datatype="BYTES", shape=[1],
                                                 raw=v2bytes.encode(["1"])), IA, ["area"]),
    "no inputs": (lambda: pb.ModelInferRequest(model_name="fraud"), IA, ["no inputs"]),
    "unknown output": (lambda: pb.ModelInferRequest(
        model_name="fraud", inputs=matrix_request(ROW).inputs, raw_input_contents=[ROW.tobytes()],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="score")]), IA, ["score"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_named_and_server_keeps_serving(stub, case):
    build, code, words = CASES[case]
    expect(stub, build(), code, *words)
    # the next good request still works
    response = stub.ModelInfer(matrix_request(ROW), timeout=10)
    assert response.outputs[1].name == "probabilities"


def test_imputed_nan_is_accepted(stub):
    response = stub.ModelInfer(price_request(age=float("nan")), timeout=10)
    assert np.isfinite(np.frombuffer(response.raw_output_contents[0], dtype="<f4")).all()


def test_oversize_message_is_resource_exhausted(stub, server):
    big = np.zeros((600_000, 30), dtype=np.float32)  # 72 MB > the 16 MiB default
    with pytest.raises(grpc.RpcError) as exc:
        stub.ModelInfer(matrix_request(big), timeout=30)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(matrix_request(ROW), timeout=10).model_name == "fraud"


def test_bad_rows_in_one_request_do_not_fail_others_in_the_batch(server):
    """Concurrent good and bad requests: only the bad ones fail."""
    with grpc.insecure_channel(server.grpc_target) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        good = matrix_request(ROW)
        bad = matrix_request(np.full((1, 30), np.nan))
        futures = [stub.ModelInfer.future(bad if i % 4 == 0 else good, timeout=10) for i in range(40)]
        outcomes = []
        for f in futures:
            try:
                f.result()
                outcomes.append("ok")
            except grpc.RpcError as exc:
                outcomes.append(exc.code().name)
    assert outcomes.count("INVALID_ARGUMENT") == 10
    assert outcomes.count("ok") == 30
