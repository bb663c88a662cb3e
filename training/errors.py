"""The errors of the model lifecycle, one class per stage, all ``LifecycleError``.

Each names what it is about (file, row, column, key, step, feature, model) in its message, and
keeps the parts as attributes where a caller may act on them. They derive from ``ValueError``
too, as they always have, so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from typing import Any, TypeVar

from onyxserve.errors import OnyxserveError


class LifecycleError(OnyxserveError, ValueError):
    """The data, recipe, model or request cannot be used as given; the message says where and why."""


E = TypeVar("E", bound=LifecycleError)


class DatasourceError(LifecycleError):
    """The data or its schema cannot be used as it is; the message says where and why.

    ``where`` is the file, URI or database the error is about; ``row`` the 1-based data row
    (the header line not counted, blank lines skipped: the numbering of the datasource's
    violations), ``column``, ``key`` and the offending ``value`` are set when known, so a
    caller can act on them without parsing text. The message reads
    ``WHERE, row N, column 'C': what is wrong with the value``.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        row: int | None = None,
        column: str | None = None,
        key: str | None = None,
        value: Any = None,
    ) -> None:
        parts = [where] if where else []
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        if key is not None:
            parts.append(f"key {key!r}")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)
        # Exception pickling re-creates from the formatted message and restores these from
        # __dict__, so they survive the trip back from a Dask worker
        self.where, self.row, self.column, self.key, self.value = where, row, column, key, value


class TrainingError(LifecycleError):
    """A recipe, hyperparameter, search space or algorithm that cannot be used as given.

    ``where`` is the document (``recipe``, ``params``, ``space``, a file name); ``key`` the
    dotted key inside it (``features.amount[1].method``), so a caller can act without parsing.
    Exit code 2 in the CLI: what it names is an input of ``train``/``tune`` as given on the
    command line (``--algorithm``, ``--params``, ``--space``, ``--recipe``).
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, key: str | None = None) -> None:
        parts = [p for p in (where, f"key {key!r}" if key is not None else None) if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)
        self.where, self.key = where, key


class ExportError(LifecycleError):
    """The model cannot be exported as it is; the message names the step, feature or row and why."""


class EvaluationError(LifecycleError):
    """Inputs that cannot be evaluated (shapes, unknown labels, an unreachable target)."""


class SourceError(DatasourceError):
    """Input of batch prediction or evaluation that cannot be scored; names the file, row,
    column and value like every DatasourceError."""


class BatchError(LifecycleError):
    """Batch prediction refused: the message names the file, column, row or model."""


class DatasourceWarning(UserWarning):
    """Data that was read, but maybe not as meant (e.g. a mostly numeric column with values that
    are not numbers); the message names the column, the rows and the schema override to write."""


_PARTS = ("where", "row", "column", "key", "value")


def restated(cls: type[E], exc: BaseException) -> E:
    """``exc`` as a ``cls`` (a command's own error type) with the same message and, when it
    has them, the same file/row/column/key/value attributes."""
    out = cls(str(exc))
    for name in _PARTS:
        if hasattr(exc, name):
            setattr(out, name, getattr(exc, name))
    return out
