"""Run pytest with ``onyxserve`` imported from another tree, for before/after benchmarks in one
session: ``python benchmarks/micro/run_other_core.py DIR [pytest args]`` where ``DIR/onyxserve``
holds a package with ``core/`` (e.g. ``git archive main core`` plus that build's .so). The
editable install's finder is removed so that ``DIR`` wins over the working tree."""

import sys

root = sys.argv.pop(1)
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path.insert(0, root)

import onyxserve.core._normalize as kernel  # noqa: E402
import pytest  # noqa: E402

if not kernel.__file__.startswith(root):
    raise SystemExit(f"onyxserve.core._normalize came from {kernel.__file__}, not {root}")
sys.exit(pytest.main(sys.argv[1:]))
