"""The model lifecycle, in Amazon ML's nouns: a datasource, a recipe, a trained (or tuned) model,
its export as a servable version, an evaluation, batch prediction.

The notebook API is this package's names (imported on first use)::

    from onyxserve.training import create_datasource, train_model, export_trained, evaluate_version  # noqa: F401
    ds = create_datasource("transactions.csv", target="Class")
    result = train_model(ds, algorithm="linear", class_weight="balanced")
    export_trained(result, name="fraud", repository="models/")

Subpackages, in the order of the workflow: ``datasource``, ``recipe``, ``fit``, ``export``,
``evaluation``, ``batch``; ``errors`` holds the one error class of each. The registry is part of
the model repository (``onyxserve.repository.registry``), shared with the server.
"""

from typing import TYPE_CHECKING

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    # datasource
    "Datasource": ".datasource.record",
    "create_datasource": ".datasource.record",
    "load_datasource": ".datasource.record",
    "read_frames": ".datasource.record",
    "parse_split": ".datasource.splits",
    "split_datasource": ".datasource.splits",
    "load_schema": ".datasource.schema",
    # recipe
    "load_recipe": ".recipe.spec",
    "parse_recipe": ".recipe.spec",
    # fit
    "train_model": ".fit.train",
    "export_trained": ".fit.train",
    "save_pipeline": ".fit.train",
    "tune_model": ".fit.tune",
    # export
    "export_model": ".export.writer",
    # evaluation
    "evaluate": ".evaluation.metrics",
    "evaluate_version": ".evaluation.metrics",
    "write_report": ".evaluation.report",
    # batch prediction
    "batch_predict": ".batch.predict",
    "batch_predict_dask": ".batch.predict",
    # the registry (the model repository's) and the example data
    "Registry": "onyxserve.repository.registry",
    "fraud_transactions": ".synthetic",
    # errors
    "LifecycleError": ".errors",
    "DatasourceError": ".errors",
    "TrainingError": ".errors",
    "ExportError": ".errors",
    "EvaluationError": ".errors",
    "BatchError": ".errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from onyxserve.repository.registry import Registry  # noqa: F401
    from onyxserve.training.batch.predict import batch_predict, batch_predict_dask  # noqa: F401
    from onyxserve.training.datasource.record import (  # noqa: F401
        Datasource,
        create_datasource,
        load_datasource,
        read_frames,
    )
    from onyxserve.training.datasource.schema import load_schema  # noqa: F401
    from onyxserve.training.datasource.splits import parse_split, split_datasource  # noqa: F401
    from onyxserve.training.errors import (  # noqa: F401
        BatchError,
        DatasourceError,
        EvaluationError,
        ExportError,
        LifecycleError,
        TrainingError,
    )
    from onyxserve.training.evaluation.metrics import evaluate, evaluate_version  # noqa: F401
    from onyxserve.training.evaluation.report import write_report  # noqa: F401
    from onyxserve.training.export.writer import export_model  # noqa: F401
    from onyxserve.training.fit.train import export_trained, save_pipeline, train_model  # noqa: F401
    from onyxserve.training.fit.tune import tune_model  # noqa: F401
    from onyxserve.training.recipe.spec import load_recipe, parse_recipe  # noqa: F401
    from onyxserve.training.synthetic import fraud_transactions  # noqa: F401
