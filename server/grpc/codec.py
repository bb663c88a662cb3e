"""protobuf <-> the dataplane: a ModelInferRequest's inputs decoded zero-copy into ``Tensor``
(after the V2 protocol's invariants), an ``InferResult`` encoded as response outputs."""

from __future__ import annotations

from math import prod

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import v2bytes
from onyxserve.protos.v2types import CONTENTS_FIELD, DTYPES
from onyxserve.server.dataplane import InferResult
from onyxserve.server.errors import InvalidInput
from onyxserve.server.models.variants import NO_ROUTING, ROUTING_KEY, VARIANT, Routing, routing_from
from onyxserve.server.tensors import Tensor, check_shape


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
        shape = check_shape(tensor.name, tensor.shape)
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



def decode_routing(request: pb.ModelInferRequest) -> Routing:
    """The request's routing parameters (``routing_key``, ``variant``); other parameters are left alone."""
    parameters = request.parameters
    if not parameters:
        return NO_ROUTING
    values = {}
    for name in (ROUTING_KEY, VARIANT):
        if name in parameters:
            parameter = parameters[name]
            choice = parameter.WhichOneof("parameter_choice")
            values[name] = None if choice is None else getattr(parameter, choice)
    return routing_from(values)


def encode_outputs(result: InferResult, response: pb.ModelInferResponse) -> None:
    """Append each output as tensor metadata + raw_output_contents; the variant that answered
    (when the request was routed to one) as the ``variant`` response parameter."""
    if result.variant is not None:
        response.parameters[VARIANT].string_param = result.variant
    info = result.model.output_types
    for name, array in result.outputs.items():
        datatype = info[name]
        if datatype == "BYTES":
            raw = v2bytes.encode(str(v) for v in array.reshape(-1))
        elif datatype == "INT64":
            raw = np.ascontiguousarray(array, dtype="<i8").tobytes()
        else:
            raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(raw)
