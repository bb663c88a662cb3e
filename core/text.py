"""Text features: V2 BYTES elements -> the strings the ONNX graph vectorizes.

Tokenizing, n-grams and tf-idf run inside the ONNX graph (see ``training/export/onnx_text.py``);
what is left here is what the graph cannot do the way scikit-learn does: decode UTF-8 (an
invalid element is the client's error, named by row) and lowercase with Python's
``str.lower``, the exact function scikit-learn's vectorizers call. This is per-row Python, but
only for text features, whose vectorization costs far more than the decoding.
"""

from __future__ import annotations

from onyxserve.protos import v2bytes


class TextValueError(ValueError):
    """A text element the model cannot take; ``row`` within its block."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"row {row}: {reason}")
        self.row, self.reason = row, reason


def decode_text(buffer: bytes | memoryview, n_rows: int, lowercase: bool) -> list[str]:
    """One block's elements of one text feature, decoded (and lowercased)."""
    try:
        elements = v2bytes.decode(buffer)
    except ValueError as exc:
        raise TextValueError(0, f"malformed BYTES: {exc}") from None
    if len(elements) != n_rows:
        raise TextValueError(0, f"has {len(elements)} elements, expected {n_rows}")
    out: list[str] = []
    for row, element in enumerate(elements):
        try:
            s = element.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextValueError(row, f"is not valid UTF-8 (byte {exc.start})") from None
        out.append(s.lower() if lowercase else s)
    return out
