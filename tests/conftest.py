from __future__ import annotations

import pytest

from tests.model_factory import build_repository
from tests.serving import ServerProcess


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory):
    """A repository with three exported models: fraud (binary), iris (multiclass), price (regression)."""
    root = tmp_path_factory.mktemp("repo") / "models"
    models = build_repository(root)
    return root, models


@pytest.fixture(scope="session")
def server(model_repo):
    """One real server for the read-only tests of the session."""
    root, _ = model_repo
    proc = ServerProcess(root, args=["--model-control", "none"]).start()
    yield proc
    assert proc.stop() == 0, proc.log()
