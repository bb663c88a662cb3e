"""JSON <-> the dataplane: a V2 REST inference body decoded into ``Tensor`` and the requested
output names, an ``InferResult`` encoded as the response body."""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np
from onyxserve.protos import v2bytes
from onyxserve.protos.v2types import DTYPES
from onyxserve.server.dataplane import InferResult
from onyxserve.server.errors import InvalidInput
from onyxserve.server.models.variants import NO_ROUTING, VARIANT, Routing, routing_from
from onyxserve.server.tensors import Tensor, check_shape


def decode_request(body: Any) -> tuple[list[Tensor], list[str]]:
    """The inputs and the requested output names of a parsed JSON inference body."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise InvalidInput("request body needs an 'inputs' list")
    tensors = [tensor_from_json(entry) for entry in body["inputs"]]
    requested = [o.get("name", "") for o in body.get("outputs", []) if isinstance(o, dict)]
    return tensors, requested


def decode_routing(body: dict[str, Any]) -> Routing:
    """The body's routing parameters (``parameters.routing_key``, ``parameters.variant``)."""
    parameters = body.get("parameters")
    if parameters is None:
        return NO_ROUTING
    if not isinstance(parameters, dict):
        raise InvalidInput(f"'parameters' must be an object, got {type(parameters).__name__}")
    return routing_from(parameters)


def tensor_from_json(entry: dict) -> Tensor:
    """One input of a V2 REST request (``{"name", "datatype", "shape", "data"}``)."""
    try:
        name, datatype, shape, data = entry["name"], entry["datatype"], entry["shape"], entry["data"]
    except (KeyError, TypeError):
        raise InvalidInput("each input needs 'name', 'datatype', 'shape' and 'data'") from None
    shape = check_shape(name, shape)
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


def _json_value(array: np.ndarray, datatype: str) -> list:
    if datatype == "BYTES":
        return [str(v) for v in array.reshape(-1)]
    return array.reshape(-1).tolist()


def encode_response(result: InferResult, request_id: str) -> dict[str, Any]:
    """The V2 REST inference response body (outputs as flat ``data`` lists)."""
    types = result.model.output_types
    outputs = [
        {"name": name, "datatype": types[name], "shape": list(array.shape), "data": _json_value(array, types[name])}
        for name, array in result.outputs.items()
    ]
    body = {
        "model_name": result.model.name,
        "model_version": result.model.version,
        "id": request_id,
        "outputs": outputs,
    }
    if result.variant is not None:  # the production variant that answered
        body["parameters"] = {VARIANT: result.variant}
    return body
