"""Old module paths, kept importable for one release: ``import`` of one warns (DeprecationWarning
naming the new path) and gives the module at its new home, the same object.

The modules were moved when the tree became one package per concern (see docs/architecture.md).
Packages that replaced a module of the same name (``onyxserve.training.datasource``, ``.recipe``,
``.export``, ``onyxserve.server.shadow``, ``.drift``) answer the old module's names themselves (``onyxserve._lazy``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from importlib import import_module
from types import ModuleType

MOVED = {
    "onyxserve.server.cli": "onyxserve.cli.serve",
    "onyxserve.training.export_cli": "onyxserve.cli.export",
    "onyxserve.training.datasource_cli": "onyxserve.cli.datasource",
    "onyxserve.training.train_cli": "onyxserve.cli.train",
    "onyxserve.training.evaluate_cli": "onyxserve.cli.evaluate",
    "onyxserve.training.registry_cli": "onyxserve.cli.registry",
    "onyxserve.training.batch_cli": "onyxserve.cli.batch_predict",
    "onyxserve.drift_cli": "onyxserve.cli.drift_report",
    "onyxserve.shadow_cli": "onyxserve.cli.shadow_report",
    "onyxserve.core.v2types": "onyxserve.protos.v2types",
    "onyxserve.core.v2bytes": "onyxserve.protos.v2bytes",
    "onyxserve.core.manifest": "onyxserve.repository.manifest",
    "onyxserve.core.model_store": "onyxserve.repository.store",
    "onyxserve.server.model_config": "onyxserve.repository.config",
    "onyxserve.training.registry": "onyxserve.repository.registry",
    "onyxserve.server.stages": "onyxserve.repository.stages",
    "onyxserve.server.grpc_servicer": "onyxserve.server.grpc.servicer",
    "onyxserve.server.http_app": "onyxserve.server.rest.app",
    "onyxserve.server.repository": "onyxserve.server.models.manager",
    "onyxserve.server.served_model": "onyxserve.server.models.served",
    "onyxserve.server.request_rows": "onyxserve.server.models.decoder",
    "onyxserve.server.shadow_compare": "onyxserve.server.shadow.compare",
    "onyxserve.server.shadow_stats": "onyxserve.server.shadow.stats",
    "onyxserve.training.datasource_summary": "onyxserve.training.datasource.summary",
    "onyxserve.training.schema": "onyxserve.training.datasource.schema",
    "onyxserve.training.profile": "onyxserve.training.datasource.profile",
    "onyxserve.training.locations": "onyxserve.training.datasource.locations",
    "onyxserve.training.splits": "onyxserve.training.datasource.splits",
    "onyxserve.training.readers": "onyxserve.training.datasource.readers",
    "onyxserve.training.recipe_compile": "onyxserve.training.recipe.compile",
    "onyxserve.training.recipe_steps": "onyxserve.training.recipe.steps",
    "onyxserve.training.train": "onyxserve.training.fit.train",
    "onyxserve.training.tune": "onyxserve.training.fit.tune",
    "onyxserve.training.train_params": "onyxserve.training.fit.params",
    "onyxserve.training.train_metrics": "onyxserve.training.fit.metrics",
    "onyxserve.training.sgd_adaptive": "onyxserve.training.fit.sgd_adaptive",
    "onyxserve.training.sklearn_split": "onyxserve.training.export.fold",
    "onyxserve.training.onnx_convert": "onyxserve.training.export.convert",
    "onyxserve.training.onnx_text": "onyxserve.training.export.onnx_text",
    "onyxserve.training.parity": "onyxserve.training.export.parity",
    "onyxserve.training.baseline": "onyxserve.training.export.baseline",
    "onyxserve.training.evaluate": "onyxserve.training.evaluation.metrics",
    "onyxserve.training.evaluation_report": "onyxserve.training.evaluation.report",
    "onyxserve.training.importance": "onyxserve.training.evaluation.importance",
    "onyxserve.training.batch_predict": "onyxserve.training.batch.predict",
    "onyxserve.training.batch_source": "onyxserve.training.batch.source",
    "onyxserve.training.batch_dask": "onyxserve.training.batch.on_dask",
    "onyxserve.training.datasource_errors": "onyxserve.training.errors",
    "onyxserve.training.train_errors": "onyxserve.training.errors",
    "onyxserve.training.export_errors": "onyxserve.training.errors",
}


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__
        warnings.warn(
            f"{old} moved to {self.new}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        # the import system returns what sys.modules holds once the module has executed
        sys.modules[old] = import_module(self.new)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds only the old names of moved modules; last on sys.meta_path, so a real module of
    that name (an older install) would still win."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader(new))


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
