"""Build V2 ``ModelInferRequest`` messages once, serialized, so the load loop sends raw bytes.

Two request forms, both with ``raw_input_contents``:

- tensor (default): one ``[N, F]`` tensor (FP32 unless told otherwise) in feature order;
- per feature: one ``[N, 1]`` (or ``[N]``) tensor per feature, numeric or BYTES (the V2 layout:
  4-byte little-endian length, then the bytes, per element).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import v2bytes
from onyxserve.protos.v2types import DTYPES as NUMPY_DTYPES

from .workload import Workload


@dataclass(frozen=True)
class RequestForm:
    """How rows become tensors. ``outputs`` are requested output names (empty: the server's
    default outputs); ``feature_rank`` is 2 for ``[N, 1]`` per-feature tensors, 1 for ``[N]``."""

    per_feature: bool = False
    rows_per_request: int = 1
    input_name: str = "input"
    datatype: str = "FP32"
    outputs: tuple[str, ...] = ()
    feature_rank: int = 2


def encode_numeric(values: np.ndarray, datatype: str) -> bytes:
    """Raw little-endian bytes of ``values`` cast to the V2 ``datatype``."""
    try:
        dtype = NUMPY_DTYPES[datatype]
    except KeyError:
        raise ValueError(f"unsupported numeric datatype {datatype!r}") from None
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def build_request(
    model: str,
    version: str,
    tensors: Sequence[tuple[str, str, Sequence[int], bytes]],
    outputs: Sequence[str] = (),
    request_id: str = "",
) -> pb.ModelInferRequest:
    """A ModelInferRequest from ``(name, datatype, shape, raw bytes)`` per input."""
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, datatype, shape, raw in tensors:
        req.inputs.add(name=name, datatype=datatype, shape=list(shape))
        req.raw_input_contents.append(raw)
    for name in outputs:
        req.outputs.add(name=name)
    return req


def request_tensors(
    workload: Workload, rows: np.ndarray, form: RequestForm
) -> list[tuple[str, str, list[int], bytes]]:
    """The input tensors carrying workload rows ``rows`` (indices) in ``form``."""
    n = len(rows)
    if not form.per_feature:
        if not workload.all_numeric:
            names = [f.name for f in workload.features if not f.numeric]
            raise ValueError(
                f"the [N, F] tensor form needs numeric features; BYTES: {names} (use --per-feature)"
            )
        matrix = workload.matrix()[rows]
        return [(form.input_name, form.datatype, [n, matrix.shape[1]], encode_numeric(matrix, form.datatype))]
    shape = [n, 1] if form.feature_rank == 2 else [n]
    out = []
    for feature, column in zip(workload.features, workload.columns):
        if feature.numeric:
            out.append(
                (feature.name, feature.datatype, shape, encode_numeric(column[rows], feature.datatype))
            )
        else:
            out.append((feature.name, "BYTES", shape, v2bytes.encode(column[i] for i in rows)))
    return out


def build_pool(
    workload: Workload, model: str, version: str, form: RequestForm, max_requests: int = 1024
) -> list[bytes]:
    """Serialized requests that together cover the workload's rows in order (wrapping around),
    at most ``max_requests`` of them; the load loop cycles through this pool."""
    k = form.rows_per_request
    if k < 1:
        raise ValueError("rows_per_request must be >= 1")
    count = max(1, min(max_requests, -(-workload.n_rows // k)))
    pool = []
    for i in range(count):
        rows = np.arange(i * k, (i + 1) * k) % workload.n_rows
        req = build_request(model, version, request_tensors(workload, rows, form), form.outputs)
        pool.append(req.SerializeToString())
    return pool


def decode_request(data: bytes) -> tuple[pb.ModelInferRequest, dict[str, np.ndarray | list[bytes]]]:
    """Parse a serialized request back into its message and tensors (tests and sanity checks)."""
    req = pb.ModelInferRequest.FromString(data)
    tensors: dict[str, np.ndarray | list[bytes]] = {}
    for tensor, raw in zip(req.inputs, req.raw_input_contents):
        if tensor.datatype == "BYTES":
            tensors[tensor.name] = v2bytes.decode(raw)
        else:
            tensors[tensor.name] = np.frombuffer(raw, dtype=NUMPY_DTYPES[tensor.datatype]).reshape(
                tuple(tensor.shape)
            )
    return req, tensors
