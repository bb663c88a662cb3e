"""The errors of the model lifecycle, one class per stage, all ``LifecycleError``.

Each names what it is about (file, row, column, key, step, feature, model) in its message, and
keeps the parts as attributes where a caller may act on them. They derive from ``ValueError``
too, as they always have, so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from onyxserve.errors import OnyxserveError


class LifecycleError(OnyxserveError, ValueError):
    """The data, recipe, model or request cannot be used as given; the message says where and why."""


class DatasourceError(LifecycleError):
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


class SourceError(LifecycleError):
    """Input that cannot be scored; the message names the file, column and rows."""


class BatchError(LifecycleError):
    """Batch prediction refused: the message names the file, column, row or model."""
