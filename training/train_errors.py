"""The one error type of recipes, training and tuning: it names the key at fault."""

from __future__ import annotations


class TrainingError(ValueError):
    """A recipe, hyperparameter, search space or algorithm that cannot be used as given.

    ``where`` is the document (``recipe``, ``params``, ``space``, a file name); ``key`` the
    dotted key inside it (``features.amount[1].method``), so a caller can act without parsing.
    """

    def __init__(self, message: str, *, where: str | None = None, key: str | None = None) -> None:
        parts = [p for p in (where, f"key {key!r}" if key is not None else None) if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)
        self.where, self.key = where, key
