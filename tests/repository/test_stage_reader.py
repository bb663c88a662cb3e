"""The server's read-only view of registry.db: what it reads, and that it never writes or blocks."""

from __future__ import annotations

import sqlite3

import pytest
from onyxserve.repository.registry import Registry
from onyxserve.repository.stages import StageReader, StageReadError

from tests.model_factory import fraud_pipeline


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """fraud versions 1..4 exported (and so registered) into a fresh repository, all approved."""
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("reader") / "models"
    pipeline, X = fraud_pipeline()
    for _ in range(4):
        export_model(pipeline, name="fraud", repository=root, sample=X.iloc[:20])
    reg = Registry(root)
    for v in ("1", "2", "3", "4"):
        reg.approve("fraud", v)
    return reg


def test_reads_aliases_and_earlier_production_like_rollback_does(registry):
    reader = StageReader(registry.db_path)
    assert reader.read() == {}  # registered versions, no stage yet
    for v in ("1", "2", "3"):
        registry.promote("fraud", v, "production")
    registry.promote("fraud", "4", "staging")
    registry.promote("fraud", "1", "archived")
    stages = reader.read()["fraud"]
    assert stages.production == "3" and stages.aliases["staging"] == "4"
    assert stages.earlier_production == ("2", "1")
    assert stages.stages_of("4") == ("staging",) and stages.stages_of("1") == ()  # archived is not served
    # the fallback order is the registry's own rollback order
    assert registry.rollback("fraud") == ("3", "2")
    assert reader.read()["fraud"].earlier_production == ("1",)
    assert registry.rollback("fraud") == ("2", "1")
    assert reader.read()["fraud"].earlier_production == ()


def test_read_only_and_never_blocks_a_writer(registry):
    reader = StageReader(registry.db_path)
    before = registry.db_path.stat().st_mtime_ns
    for _ in range(20):
        reader.read()
    assert registry.db_path.stat().st_mtime_ns == before
    # while a registry writer holds the write lock, the reader still reads (WAL) ...
    writer = sqlite3.connect(registry.db_path, isolation_level=None, timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE aliases SET updated_at = 'x' WHERE model = 'fraud'")
    assert "fraud" in reader.read()
    writer.execute("ROLLBACK")
    writer.close()
    # ... and a write right after reads is not refused (the reader held no lock)
    registry.promote("fraud", "4", "shadow")
    assert reader.read()["fraud"].aliases["shadow"] == "4"


def test_missing_and_broken_databases(tmp_path):
    missing = StageReader(tmp_path / "registry.db")
    assert not missing.exists()
    with pytest.raises(StageReadError, match="registry.db"):
        missing.read()
    assert not (tmp_path / "registry.db").exists()  # mode=ro: never created by the server
    (tmp_path / "registry.db").write_bytes(b"not sqlite" * 200)
    with pytest.raises(StageReadError, match="registry.db"):
        StageReader(tmp_path / "registry.db").read()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StageReadError, match="aliases"):
        StageReader(empty).read()
