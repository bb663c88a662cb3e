"""Export: a fitted pipeline -> a servable version. ``fold`` folds the preprocessing into the
manifest, ``convert`` and ``onnx_text`` turn the estimator (and text vectorizers) into ONNX,
``parity`` checks served scores against the pipeline, ``baseline`` records the training
distributions drift monitoring compares with, and ``writer`` puts it all together."""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "export_model": ".writer",
    "ExportResult": ".writer",
    "ExportError": "onyxserve.training.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, legacy_module=".writer")
