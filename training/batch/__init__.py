"""Batch prediction: the rows to score in chunks (``source``), scoring them through the served path
(``predict``), and the same on a Dask cluster (``on_dask``)."""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "batch_predict": ".predict",
    "batch_predict_dask": ".predict",
    "BatchSummary": ".predict",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
