"""onyxserve: serve scikit-learn models as ONNX over the V2 inference protocol.

The package is assembled from the repository's top-level folders (``core/`` is
``onyxserve.core``, ``server/`` is ``onyxserve.server``, ...; ``setup.py`` maps them).
"""

from pathlib import Path as _Path

from onyxserve._moved import install as _install_moved

__version__ = "0.1.0"

# Imported from a source checkout (its root on sys.path, e.g. `python -m onyxserve` there): the
# subpackages are this checkout's sibling folders, never those of another installed copy.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.py").is_file() and (_checkout / "core" / "_normalize.pyx").is_file():
    if str(_checkout) not in __path__:
        __path__.append(str(_checkout))

_install_moved()
