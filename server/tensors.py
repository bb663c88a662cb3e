"""V2 tensors at the edge: what both transports' codecs decode a request's inputs into.

A decoded ``Tensor`` holds a numpy array (numeric types) or the raw V2 BYTES buffer (BYTES
type, parsed later by the compiled core). The wire formats live with their transports
(``grpc/codec.py`` protobuf, ``rest/codec.py`` JSON); here are the protocol-level checks they
share. What the tensors must look like for a particular model is checked in ``models/decoder.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import prod

import numpy as np
from onyxserve.server.errors import InvalidInput

from onyxserve._lazy import lazy_exports


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | bytes  # bytes only for BYTES: the V2 length-prefixed buffer

    @property
    def n_elements(self) -> int:
        return prod(self.shape)


def check_shape(name: str, shape: Iterable[int]) -> tuple[int, ...]:
    """A request's shape as ints: at least one dimension, none negative."""
    dims = tuple(int(d) for d in shape)
    if not dims or any(d < 0 for d in dims):
        raise InvalidInput(f"input '{name}': shape {list(dims)} must have at least one dimension, none negative")
    return dims


# the codecs' names this module held before they moved to their transports, for one release
__getattr__ = lazy_exports(
    __name__, {}, legacy_module=("onyxserve.server.grpc.codec", "onyxserve.server.rest.codec")
)[0]
