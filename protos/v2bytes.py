"""The V2 protocol's BYTES tensor layout: each element is a 4-byte little-endian length
followed by that many bytes, elements back to back. Python helpers for clients, tests and
the typed-contents path; the server's hot path parses these buffers in the compiled core."""

from __future__ import annotations

import struct
from collections.abc import Iterable

_LEN = struct.Struct("<I")


def encode(values: Iterable[bytes | str]) -> bytes:
    """Serialize elements (str is UTF-8 encoded) into one V2 BYTES buffer."""
    parts: list[bytes] = []
    for v in values:
        b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def decode(buffer: bytes | memoryview) -> list[bytes]:
    """Split a V2 BYTES buffer into its elements; ValueError names the byte offset that is wrong."""
    view = memoryview(buffer)
    out: list[bytes] = []
    pos = 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise ValueError(f"truncated length prefix at byte {pos}")
        (n,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + n > len(view):
            raise ValueError(f"element {len(out)} claims {n} bytes at byte {pos}, only {len(view) - pos} left")
        out.append(bytes(view[pos : pos + n]))
        pos += n
    return out
