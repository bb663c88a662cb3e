"""The one error type of export: it always says which step, feature or row is the problem."""

from __future__ import annotations


class ExportError(ValueError):
    """The model cannot be exported as it is; the message names the step, feature or row and why."""
