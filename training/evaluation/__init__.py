"""Evaluation: metrics of a version on labelled data beside the Amazon ML baseline (``metrics``),
permutation importance (``importance``) and the HTML report (``report``)."""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "evaluate": ".metrics",
    "evaluate_version": ".metrics",
    "EvaluationResult": ".metrics",
    "write_report": ".report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
