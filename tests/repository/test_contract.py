"""The repository package is the contract both halves import, so it imports neither."""

from __future__ import annotations

import subprocess
import sys

from onyxserve import repository

MODULES = ("config", "manifest", "registry", "schema", "stages", "store")


def test_imports_neither_training_nor_serving():
    imports = "; ".join(f"import onyxserve.repository.{m}" for m in MODULES)
    check = (
        f"import sys; {imports}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'onnxruntime', 'grpc', 'pydantic')"
        " or m.startswith(('onyxserve.server', 'onyxserve.training', 'onyxserve.cli'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_public_names_resolve():
    for name in repository.__all__:
        assert getattr(repository, name) is not None
    assert repository.registry_path("models").as_posix() == "models/registry.db"
