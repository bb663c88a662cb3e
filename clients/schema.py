"""What a model expects, from its ModelMetadata (and ModelConfig's feature list), cached per
(model, version) so DataFrames and dicts can be mapped to features by name."""

from __future__ import annotations

from dataclasses import dataclass

from onyxserve.protos import grpc_service_pb2 as pb


@dataclass(frozen=True)
class ModelSchema:
    """``features`` in the model's order with their V2 datatype (``BYTES`` for categorical).
    ``matrix_input`` names the single ``[N, F]`` input of an all-numeric model, or is None when
    the model takes one input per feature. ``features`` is empty when the server did not say
    (a matrix model on a server without the ``features`` config parameter)."""

    name: str
    features: tuple[tuple[str, str], ...]
    matrix_input: str | None
    n_matrix_features: int
    outputs: tuple[str, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)

    @property
    def categorical(self) -> frozenset[str]:
        return frozenset(name for name, datatype in self.features if datatype == "BYTES")

    @classmethod
    def from_messages(cls, meta: pb.ModelMetadataResponse, config: pb.ModelConfig | None) -> ModelSchema:
        outputs = tuple(o.name for o in meta.outputs)
        inputs = list(meta.inputs)
        if len(inputs) == 1 and len(inputs[0].shape) == 2:
            width = int(inputs[0].shape[1])
            names = _config_features(config)
            features = tuple((n, "FP32") for n in names) if len(names) == width else ()
            return cls(meta.name, features, inputs[0].name, width, outputs)
        features = tuple((t.name, t.datatype) for t in inputs)
        return cls(meta.name, features, None, 0, outputs)


def _config_features(config: pb.ModelConfig | None) -> list[str]:
    if config is None or "features" not in config.parameters:
        return []
    text = config.parameters["features"].string_value
    return text.split(",") if text else []


class SchemaCache:
    """(model, requested version) -> ModelSchema; "" is the version the server picks (latest)."""

    def __init__(self) -> None:
        self._schemas: dict[tuple[str, str], ModelSchema] = {}

    def get(self, model: str, version: str) -> ModelSchema | None:
        return self._schemas.get((model, version))

    def put(self, model: str, version: str, schema: ModelSchema) -> None:
        self._schemas[(model, version)] = schema

    def forget(self, model: str | None = None) -> None:
        """Drop one model's entries (all versions), or everything."""
        if model is None:
            self._schemas.clear()
        else:
            for key in [k for k in self._schemas if k[0] == model]:
                del self._schemas[key]
