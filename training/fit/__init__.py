"""Fitting models: one training run (``train``), a hyperparameter search (``tune``), the
algorithms' parameter tables (``params``), the metrics they report (``metrics``) and the
SGD learning-rate schedule for per-pass training (``sgd_adaptive``)."""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "train_model": ".train",
    "export_trained": ".train",
    "save_pipeline": ".train",
    "TrainResult": ".train",
    "tune_model": ".tune",
    "TuneResult": ".tune",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
