"""One rule for where registry.db is: the server, the registry, batch prediction and evaluation
all open the file ``registry_path`` names, with and without an override."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from onyxserve.core.scorer import load_manifest
from onyxserve.repository.registry import Registry
from onyxserve.repository.store import DB_FILE, registry_path, version_repository
from onyxserve.server.settings import Settings, load_settings
from onyxserve.training.batch.predict import decision_threshold
from onyxserve.training.evaluation.metrics import evaluate_version

from tests.model_factory import fraud_frame


@pytest.fixture
def repo(model_repo, tmp_path) -> Path:
    """A copy of the session's repository, indexed in its own registry.db."""
    root, _ = model_repo
    copy = tmp_path / "models"
    shutil.copytree(root, copy)
    Registry(copy).sync()
    return copy


def test_the_rule(tmp_path):
    assert registry_path(tmp_path) == tmp_path / DB_FILE == tmp_path / "registry.db"
    assert registry_path(str(tmp_path)) == tmp_path / "registry.db"
    assert registry_path(tmp_path, tmp_path / "elsewhere.db") == tmp_path / "elsewhere.db"
    assert registry_path(tmp_path, str(tmp_path / "elsewhere.db")) == tmp_path / "elsewhere.db"
    # no override, however spelled, is the default
    assert registry_path(tmp_path, None) == registry_path(tmp_path, "") == tmp_path / "registry.db"


def test_a_version_folder_names_its_repository(tmp_path, monkeypatch):
    vdir = tmp_path / "models" / "fraud" / "3"
    vdir.mkdir(parents=True)
    root = (tmp_path / "models").resolve()
    assert version_repository(vdir) == root
    assert version_repository(str(vdir)) == root
    assert version_repository(vdir / ".." / "3") == root
    monkeypatch.chdir(vdir)
    assert version_repository(".") == root  # not Path(".").parent.parent, which is "."
    monkeypatch.chdir(vdir.parent)
    assert version_repository("3") == root


def test_server_and_registry_agree_with_and_without_override(tmp_path):
    root = tmp_path / "models"
    override = tmp_path / "var" / "reg.db"
    assert Settings(repository=root).registry_path() == registry_path(root)
    assert load_settings(repository=root).registry_path() == registry_path(root)
    assert Registry(root).db_path == registry_path(root)
    assert Settings(repository=root, registry_db=override).registry_path() == registry_path(root, override)
    assert Registry(root, override).db_path == registry_path(root, override) == override
    assert override.is_file() and (root / "registry.db").is_file()  # each Registry made its own file


def test_batch_prediction_reads_the_registry_the_server_reads(repo, monkeypatch):
    vdir = repo / "fraud" / "1"
    manifest = load_manifest(vdir)
    Registry(repo).set_threshold("fraud", "1", 0.37)
    assert Settings(repository=repo).registry_path() == registry_path(version_repository(vdir))
    assert decision_threshold(vdir, manifest, "registry") == 0.37
    assert decision_threshold(vdir / ".." / "1", manifest, "registry") == 0.37
    monkeypatch.chdir(vdir)  # the path spelled from inside the version folder: the same registry
    assert decision_threshold(".", manifest, "registry") == 0.37
    # a registry at an override path is not this repository's: batch prediction does not see it
    other = Registry(repo, repo.parent / "other.db")
    other.sync()
    other.set_threshold("fraud", "1", 0.9)
    assert decision_threshold(vdir, manifest, "registry") == 0.37
    registry_path(repo).unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{registry_path(repo)}{suffix}").unlink(missing_ok=True)
    assert decision_threshold(vdir, manifest, "registry") is None  # no registry: the model's own label


def test_evaluation_records_in_the_registry_the_server_reads(repo, monkeypatch):
    X, y = fraud_frame(600, seed=4)
    X["Class"] = y
    monkeypatch.chdir(repo / "fraud")  # a relative version folder resolves to the same repository
    outcome = evaluate_version("1", X, "Class", importance_rows=0)
    assert outcome.registry_updated
    assert Registry(repo).get_version("fraud", "1").threshold == outcome.result.threshold
    assert os.path.samefile(registry_path(version_repository(outcome.version_dir)),
                            Settings(repository=repo).registry_path())
