"""The registry schema and its production-history replay, written once for the writer
(``Registry``) and the server's read-only snapshot (``StageReader``)."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing

import pytest
from onyxserve.repository import registry as registry_module
from onyxserve.repository import stages as stages_module
from onyxserve.repository.registry import Registry, RegistryError
from onyxserve.repository.schema import (
    APPROVALS,
    SCHEMA,
    SERVED_STAGES,
    STAGES,
    earlier_production,
    production_moves,
)
from onyxserve.repository.stages import StageReader

from tests.model_factory import fraud_pipeline

# -- the two replays as they were before they became one (commit 0111484), kept as oracles ----


def _old_registry_target(moves: list[tuple[str, int]], current: int, existing: set[int]) -> int | None:
    """``Registry.rollback``'s target, as ``registry._production_stack`` computed it."""
    stack: list[int] = []
    for action, version in moves:
        if action == "promote":
            stack.append(version)
        else:
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:
                stack.append(version)
    while stack and stack[-1] == current:
        stack.pop()
    return next((ver for ver in reversed(stack) if ver in existing and ver != current), None)


def _old_stage_reader(moves: list[tuple[str, int]], current: str | None) -> tuple[str, ...]:
    """``stages._earlier_production`` for one model."""
    stack: list[str] = []
    for action, version in moves:
        version = str(version)
        if action == "promote":
            stack.append(version)
        else:
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:
                stack.append(version)
    out: list[str] = []
    for version in reversed(stack):
        if version != current and version not in out:
            out.append(version)
    return tuple(out)


def _random_moves(rng: random.Random) -> list[tuple[str, int]]:
    # arbitrary, not only histories the registry writes: rollbacks to versions never promoted too
    actions = ("promote", "promote", "rollback")
    return [(rng.choice(actions), rng.randint(1, 6)) for _ in range(rng.randint(0, 14))]


def test_one_replay_answers_as_both_copies_did():
    rng = random.Random(8)
    for _ in range(5000):
        moves = _random_moves(rng)
        current = rng.choice([None, *range(1, 7)])
        existing = {v for v in range(1, 7) if rng.random() < 0.7}
        earlier = earlier_production(moves, current)
        assert earlier == _old_stage_reader(moves, None if current is None else str(current))
        if current is not None:
            target = next((v for v in earlier if int(v) in existing), None)
            old = _old_registry_target(moves, current, existing)
            assert target == (None if old is None else str(old)), (moves, current, existing)


def test_replay_by_hand():
    promote, rollback = "promote", "rollback"
    assert earlier_production([], None) == ()
    assert earlier_production([(promote, 1), (promote, 2), (promote, 3)], "3") == ("2", "1")
    # a rollback pops back to its target: 3 no longer counts as "before"
    assert earlier_production([(promote, 1), (promote, 2), (promote, 3), (rollback, 2)], "2") == ("1",)
    # a version promoted twice is named once, at its newest place
    assert earlier_production([(promote, 1), (promote, 2), (promote, 1), (promote, 3)], 3) == ("1", "2")
    # a rollback to a version never seen promoted starts the replay again from it
    assert earlier_production([(promote, 4), (rollback, 2), (promote, 5)], "5") == ("2",)


def test_schema_names_come_from_the_tuples():
    assert SERVED_STAGES == ("production", "shadow", "staging") and set(SERVED_STAGES) < set(STAGES)
    assert "archived" in STAGES and "archived" not in SERVED_STAGES
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO models VALUES ('m', 'now')")
    db.execute("INSERT INTO versions (model, version, path, manifest_sha256, model_sha256, task, created_at,"
               " registered_at) VALUES ('m', 1, '/m/1', 'a', 'b', 'binary', 'now', 'now')")
    for stage in STAGES:
        db.execute("INSERT INTO aliases VALUES ('m', ?, 1, 'now')", (stage,))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO aliases VALUES ('m', 'canary', 1, 'now')")
    for approval in APPROVALS:
        db.execute("UPDATE versions SET approval = ?", (approval,))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE versions SET approval = 'maybe'")
    # the writer and the reader use these, not copies of their own
    assert registry_module.SCHEMA is SCHEMA and registry_module.STAGES is STAGES
    assert stages_module.SERVED_STAGES is SERVED_STAGES
    assert stages_module.earlier_production is registry_module.earlier_production is earlier_production


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """fraud versions 1..5 exported (and so registered) into a fresh repository, all approved."""
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("replay") / "models"
    pipeline, X = fraud_pipeline()
    for _ in range(5):
        export_model(pipeline, name="fraud", repository=root, sample=X.iloc[:20])
    reg = Registry(root)
    for v in range(1, 6):
        reg.approve("fraud", v)
    return reg


def test_registry_and_stage_reader_walk_the_same_history(registry):
    """Random promotions and rollbacks on a real registry: after each, the server's fallback
    order is what both old copies computed from the history table, and a rollback goes to the
    first of it."""
    rng = random.Random(3)
    rolled = 0
    reader = StageReader(registry.db_path)
    with closing(sqlite3.connect(registry.db_path)) as db:
        assert production_moves(db) == {}
    for _ in range(40):
        if rng.random() < 0.65:
            registry.promote("fraud", rng.randint(1, 5), "production")
        else:
            try:
                registry.rollback("fraud")
                rolled += 1
            except RegistryError:
                continue  # nothing earlier: the stack is one deep
        current = registry.aliases("fraud")["production"]
        with closing(sqlite3.connect(registry.db_path)) as db:
            moves = production_moves(db, "fraud")["fraud"]
            assert production_moves(db)["fraud"] == moves
        # (action, version, split): no split in this walk, so the old oracles read the first two
        assert all(split is None for _, _, split in moves)
        moves = [(action, version) for action, version, _ in moves]
        expected = _old_stage_reader(moves, current)
        assert reader.read()["fraud"].earlier_production == expected
        target = _old_registry_target(moves, int(current), set(range(1, 6)))
        assert (expected[0] if expected else None) == (None if target is None else str(target))
    assert rolled >= 5  # the walk went back often enough to mean something
