"""V2 tensors at the edge: check request invariants, then decode zero-copy.

A decoded ``Tensor`` holds a numpy array (numeric types) or the raw V2 BYTES buffer (BYTES
type, parsed later by the compiled core). Everything here is protocol-level; what the tensors
must look like for a particular model is checked in ``request_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import v2bytes
from onyxserve.protos.v2types import CONTENTS_FIELD, DTYPES
from onyxserve.server.errors import InvalidInput


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | bytes  # bytes only for BYTES: the V2 length-prefixed buffer

    @property
    def n_elements(self) -> int:
        return prod(self.shape)


def _check_shape(name: str, shape) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if not dims or any(d < 0 for d in dims):
        raise InvalidInput(f"input '{name}': shape {list(dims)} must have at least one dimension, none negative")
    return dims


def decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> Tensor:
    """One tensor from its raw bytes: length checked against shape, then np.frombuffer."""
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, raw)
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}': unsupported datatype '{datatype}'")
    expected = prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input '{name}': raw_input_contents has {len(raw)} bytes, shape {list(shape)} of {datatype} "
            f"needs {expected}"
        )
    return Tensor(name, datatype, shape, np.frombuffer(raw, dtype=dtype).reshape(shape))


def _decode_typed(name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents) -> Tensor:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input '{name}': unsupported datatype '{datatype}' for typed contents")
    values = getattr(contents, field)
    if len(values) != prod(shape):
        raise InvalidInput(
            f"input '{name}': {field} has {len(values)} values, shape {list(shape)} needs {prod(shape)}"
        )
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, v2bytes.encode(values))
    return Tensor(name, datatype, shape, np.asarray(values, dtype=DTYPES[datatype]).reshape(shape))


def decode_grpc_inputs(request: pb.ModelInferRequest) -> list[Tensor]:
    """Decode a ModelInferRequest's inputs after checking the protocol's invariants."""
    inputs = request.inputs
    raw = request.raw_input_contents
    if not inputs:
        raise InvalidInput("request has no inputs")
    if raw and len(raw) != len(inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs; it must have one per input"
        )
    tensors = []
    for i, tensor in enumerate(inputs):
        shape = _check_shape(tensor.name, tensor.shape)
        has_typed = tensor.HasField("contents")
        if raw:
            if has_typed:
                raise InvalidInput(
                    f"input '{tensor.name}': uses both typed contents and raw_input_contents; use one"
                )
            tensors.append(decode_raw(tensor.name, tensor.datatype, shape, raw[i]))
        elif has_typed:
            tensors.append(_decode_typed(tensor.name, tensor.datatype, shape, tensor.contents))
        else:
            raise InvalidInput(f"input '{tensor.name}': has no data (neither contents nor raw_input_contents)")
    return tensors


def tensor_from_json(entry: dict) -> Tensor:
    """One input of a V2 REST request (``{"name", "datatype", "shape", "data"}``)."""
    try:
        name, datatype, shape, data = entry["name"], entry["datatype"], entry["shape"], entry["data"]
    except (KeyError, TypeError):
        raise InvalidInput("each input needs 'name', 'datatype', 'shape' and 'data'") from None
    shape = _check_shape(name, shape)
    flat = np.ravel(np.asarray(data, dtype=object)) if datatype == "BYTES" else None
    if datatype == "BYTES":
        if flat.size != prod(shape):
            raise InvalidInput(f"input '{name}': data has {flat.size} values, shape {list(shape)} needs {prod(shape)}")
        return Tensor(name, datatype, shape, v2bytes.encode(str(v) for v in flat))
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}': unsupported datatype '{datatype}'")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError):
        raise InvalidInput(f"input '{name}': data is not a list of {datatype} values") from None
    if array.size != prod(shape):
        raise InvalidInput(f"input '{name}': data has {array.size} values, shape {list(shape)} needs {prod(shape)}")
    return Tensor(name, datatype, shape, array.reshape(shape))
