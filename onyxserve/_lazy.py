"""Package facades that import on first use, so ``import onyxserve.training`` stays cheap and a
serving image without scikit-learn can still import the packages it needs."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], legacy_module: str | Sequence[str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to
    the module (absolute, or relative to ``package``) that defines it.

    ``legacy_module``: the package replaced a module of the same name, whose other names stay
    reachable for one release with a DeprecationWarning naming their new home (the first of
    these modules that has the name).
    """
    legacy = (legacy_module,) if isinstance(legacy_module, str) else tuple(legacy_module or ())

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            return getattr(import_module(module, package), name)
        for home in legacy if not name.startswith("__") else ():
            target = import_module(home, package)
            if hasattr(target, name):
                warnings.warn(
                    f"{package}.{name} moved to {target.__name__}.{name}; the old path goes in the next release",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(target, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
