"""Recipes: the JSON a user writes (``spec``), the scikit-learn steps it may use (``steps``) and
the ColumnTransformer built from a fitted plan (``compile``)."""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "Recipe": ".spec",
    "Plan": ".spec",
    "load_recipe": ".spec",
    "parse_recipe": ".spec",
    "fit_recipe": ".spec",
    "compile_recipe": ".spec",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, legacy_module=".spec")
