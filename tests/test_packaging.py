"""setup.py discovers the subpackages under the mapped top-level folders (find_packages), so a
folder holding modules must be a package (have an __init__.py), or its modules silently miss
the wheel. The wheel itself was checked by hand against this tree (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mapped_folders() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FOLDERS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no FOLDERS table")


def test_every_folder_with_modules_is_a_package():
    folders = _mapped_folders()
    assert {"core", "server", "training", "repository", "clients", "protos", "onyxserve"} <= set(folders.values())
    missing = []
    for folder in folders.values():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            for parent in path.parents:
                if parent == ROOT:
                    break
                if not (parent / "__init__.py").is_file():
                    missing.append(str(parent.relative_to(ROOT)))
    assert not missing, f"folders with modules but no __init__.py (left out of the wheel): {sorted(set(missing))}"


def test_no_top_level_folder_with_modules_is_left_unmapped():
    mapped = set(_mapped_folders().values())
    not_packaged = {"tests", "benchmarks", "examples", "scripts", "deploy", "build", "docs"}
    for child in ROOT.iterdir():
        if child.is_dir() and not child.name.startswith(".") and (child / "__init__.py").is_file():
            assert child.name in mapped | not_packaged, f"{child.name}/ is a package but setup.py does not map it"


def test_the_serving_path_needs_no_export_extra_and_declares_scipy():
    """Serving (`pip install onyxserve`, no extras) imports no export/training package; the
    drift tests' scipy is a core dependency."""
    import subprocess
    import sys

    import tomllib

    code = ("import sys; import onyxserve.server.app, onyxserve.server.drift.report, onyxserve.server.drift.collector;"
            " print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    imported = set(done.stdout.split())
    assert not imported & {"sklearn", "pandas", "matplotlib", "skl2onnx", "onnx", "pyarrow"}, imported
    core = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert "scipy" in imported and any(d.startswith("scipy") for d in core)
