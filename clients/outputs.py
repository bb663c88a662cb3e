"""Decode a ``ModelInferResponse`` into numpy arrays: raw little-endian contents through one
datatype table, BYTES into an object array of ``str``, typed contents as a fallback."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import v2bytes
from onyxserve.protos.v2types import CONTENTS_FIELD, DTYPES


def decode_output(tensor: pb.ModelInferResponse.InferOutputTensor, raw: bytes | None) -> np.ndarray:
    """One output tensor as a numpy array of its shape (BYTES: object array of ``str``)."""
    shape = tuple(int(d) for d in tensor.shape)
    if tensor.datatype == "BYTES":
        items = v2bytes.decode(raw) if raw is not None else list(tensor.contents.bytes_contents)
        array = np.empty(len(items), dtype=object)
        array[:] = [b.decode("utf-8", errors="replace") for b in items]
        return array.reshape(shape)
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise ValueError(f"output '{tensor.name}': unsupported datatype {tensor.datatype}")
    if raw is not None:
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    return np.asarray(getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]), dtype=dtype).reshape(shape)


class InferResult:
    """The outputs of one inference. ``labels`` and ``probabilities`` for classifiers,
    ``values`` for regression (None when the model has no such output or it was not requested);
    ``as_numpy(name)`` for any output by name. Arrays are decoded once, on first access."""

    def __init__(self, response: pb.ModelInferResponse) -> None:
        self.response = response
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def model_name(self) -> str:
        return self.response.model_name

    @property
    def model_version(self) -> str:
        return self.response.model_version

    @property
    def id(self) -> str:
        return self.response.id

    @property
    def variant(self) -> str | None:
        """The production variant that answered (None: the request named a version, or the
        model has no variants); ``model_version`` is its version."""
        parameters = self.response.parameters
        return parameters["variant"].string_param if "variant" in parameters else None

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.response.outputs]

    def as_numpy(self, name: str) -> np.ndarray | None:
        """The output called ``name``, or None if the response does not have it."""
        if name not in self._arrays:
            raw_contents = self.response.raw_output_contents
            for i, tensor in enumerate(self.response.outputs):
                if tensor.name == name:
                    raw = raw_contents[i] if i < len(raw_contents) else None
                    self._arrays[name] = decode_output(tensor, raw)
                    break
            else:
                return None
        return self._arrays[name]

    @property
    def labels(self) -> np.ndarray | None:
        return self.as_numpy("label")

    @property
    def probabilities(self) -> np.ndarray | None:
        return self.as_numpy("probabilities")

    @property
    def values(self) -> np.ndarray | None:
        return self.as_numpy("value")

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self.output_names:
            yield name, self.as_numpy(name)

    def __repr__(self) -> str:
        shapes = {t.name: list(t.shape) for t in self.response.outputs}
        return f"InferResult(model={self.model_name!r}, version={self.model_version!r}, outputs={shapes})"
