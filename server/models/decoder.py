"""Map a request's tensors onto a model's features: the two V2 request forms.

Form A: one ``[N, F]`` FP32/FP64 tensor with the features in manifest order (numeric models).
Form B: one tensor per feature, ``[N]`` or ``[N, 1]``: numeric types for numeric features,
BYTES for categorical ones. Everything is checked here, with messages naming the input or
feature, so the compiled core only ever sees well-formed blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onyxserve.core.normalizer import RowBlock
from onyxserve.repository.manifest import Manifest
from onyxserve.server.errors import InvalidInput
from onyxserve.server.tensors import Tensor

MATRIX_INPUT = "input"  # the name ModelMetadata advertises for form A
_FLOAT_TYPES = ("FP32", "FP64")
_NUMERIC_TYPES = ("FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
                  "UINT64", "BOOL")


class RowDecoder:
    """Built once per model version; ``decode`` runs on every request."""

    def __init__(self, manifest: Manifest) -> None:
        self.model = f"{manifest.name}/{manifest.version}"
        self.names = manifest.feature_names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.categorical = tuple(f.is_bytes for f in manifest.features)  # sent as BYTES
        self.kinds = tuple(f.type for f in manifest.features)
        self.all_numeric = manifest.all_numeric

    def decode(self, tensors: Sequence[Tensor]) -> RowBlock:
        if len(tensors) == 1 and tensors[0].name not in self.index:
            return self._matrix(tensors[0])
        return self._columns(tensors)

    def _matrix(self, t: Tensor) -> RowBlock:
        n_features = len(self.names)
        if not self.all_numeric:
            cats = [n for n, c in zip(self.names, self.categorical) if c]
            raise InvalidInput(
                f"input '{t.name}' is not a feature of {self.model}; this model has categorical or text features "
                f"{cats}, so send one input per feature: {list(self.names)}"
            )
        if t.datatype not in _FLOAT_TYPES:
            raise InvalidInput(f"input '{t.name}': datatype {t.datatype}, expected FP32 or FP64")
        if len(t.shape) != 2 or t.shape[1] != n_features:
            raise InvalidInput(
                f"input '{t.name}': shape {list(t.shape)}, expected [N, {n_features}] "
                f"(features in order: {_short(self.names)})"
            )
        if t.shape[0] == 0:
            raise InvalidInput(f"input '{t.name}': has no rows")
        return RowBlock(n_rows=t.shape[0], matrix=t.data)

    def _columns(self, tensors: Sequence[Tensor]) -> RowBlock:
        columns: list = [None] * len(self.names)
        n_rows = -1
        for t in tensors:
            j = self.index.get(t.name)
            if j is None:
                raise InvalidInput(
                    f"input '{t.name}' is not a feature of {self.model}; expected one [N, {len(self.names)}] "
                    f"FP32 input or one input per feature: {_short(self.names)}"
                )
            if columns[j] is not None:
                raise InvalidInput(f"input '{t.name}' appears twice")
            if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1):
                raise InvalidInput(f"input '{t.name}': shape {list(t.shape)}, expected [N] or [N, 1]")
            if n_rows < 0:
                n_rows = t.shape[0]
            elif t.shape[0] != n_rows:
                raise InvalidInput(f"input '{t.name}': has {t.shape[0]} rows, other inputs have {n_rows}")
            if self.categorical[j]:
                if t.datatype != "BYTES":
                    raise InvalidInput(
                        f"input '{t.name}': {self.kinds[j]} feature, expected BYTES, got {t.datatype}"
                    )
                columns[j] = t.data
            else:
                columns[j] = _numeric_column(t)
        missing = [name for name, col in zip(self.names, columns) if col is None]
        if missing:
            raise InvalidInput(f"missing feature{'s' if len(missing) > 1 else ''} {_short(missing)} for {self.model}")
        if n_rows == 0:
            raise InvalidInput("inputs have no rows")
        return RowBlock(n_rows=n_rows, columns=columns)


def _numeric_column(t: Tensor) -> np.ndarray:
    if t.datatype not in _NUMERIC_TYPES:
        raise InvalidInput(f"input '{t.name}': numeric feature, got datatype {t.datatype}")
    column = t.data.reshape(-1)
    if column.dtype not in (np.float32, np.float64):
        column = column.astype(np.float64)
    return column


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}]"
