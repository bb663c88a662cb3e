"""The one error type of datasources: it always names the file, row, column or key at fault."""

from __future__ import annotations


class DatasourceError(ValueError):
    """The data or its schema cannot be used as it is; the message says where and why.

    ``where`` is the file, URI or database the error is about; ``row`` (1-based data row),
    ``column`` and ``key`` are set when known, so a caller can act on them without parsing text.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        row: int | None = None,
        column: str | None = None,
        key: str | None = None,
    ) -> None:
        parts = [where] if where else []
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        if key is not None:
            parts.append(f"key {key!r}")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)
        self.where, self.row, self.column, self.key = where, row, column, key
