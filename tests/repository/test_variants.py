"""Production variants in the registry: splits (``repository/variants.py``), canary steps,
rollback restoring the split before, the server's read-only reader, and a version 1 file
upgraded. Real SQLite, real exported versions."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

import pytest
from onyxserve.repository.registry import Registry, RegistryError
from onyxserve.repository.schema import SCHEMA_VERSION, earlier_production, earlier_states
from onyxserve.repository.stages import StageReader
from onyxserve.repository.variants import (
    Variant,
    VariantError,
    describe,
    from_json,
    make_split,
    parse_spec,
    solo,
    to_json,
    with_canary,
    without,
)

from tests.model_factory import fraud_pipeline

# ---- the value functions ----


def test_make_split_normalizes_orders_and_names():
    split = make_split([(None, "4", 1), ("blue", 3, 9)], primary="3")
    assert split == (Variant("blue", "3", 90.0), Variant("v4", "4", 10.0))
    assert describe(split) == "blue=3:90% v4=4:10%"
    # without a primary among them, the heaviest is primary; the rest in version order
    assert [x.version for x in make_split([(None, 5, 1), (None, 2, 1), (None, 7, 3)])] == ["7", "2", "5"]
    assert make_split([(None, 3, 1), (None, 4, 2)], primary="9")[0].version == "4"
    # a zero weight is allowed (reachable by name, no random traffic) as long as the sum is positive
    assert make_split([(None, 3, 5), (None, 4, 0)])[1].weight == 0.0
    # one spelling: 1/3 shares round-trip, and 9:1 is 90:10
    thirds = make_split([(None, v, 1) for v in (1, 2, 3)], primary=1)
    assert from_json(to_json(thirds)) == thirds
    assert to_json(make_split([(None, 3, 9), (None, 4, 1)])) == to_json(make_split([(None, 3, 90), (None, 4, 10)]))
    assert to_json(solo(3)) is None and from_json(None, 3) == solo(3) and from_json(None) == ()


@pytest.mark.parametrize("entries,words", [
    ([], ("no variants",)),
    ([(None, 3, 0), (None, 4, 0)], ("sum to 0", "positive")),
    ([(None, 3, -1), (None, 4, 5)], ("v3", "-1", ">= 0")),
    ([(None, 3, float("nan"))], ("v3", "nan")),
    ([(None, 3, "lots")], ("'lots'", "not a number")),
    ([(None, 3, True)], ("not a number",)),
    ([(None, 0, 1)], ("version 0", "positive whole number")),
    ([(None, "3a", 1)], ("'3a'",)),
    ([("a", 3, 1), ("a", 4, 1)], ("name 'a' appears twice",)),
    ([("a", 3, 1), ("b", 3, 1)], ("version '3' appears twice",)),
    ([("7", 3, 1)], ("name '7'", "start with a letter")),
    ([("has space", 3, 1)], ("'has space'",)),
])
def test_bad_splits_are_refused_naming_the_field(entries, words):
    with pytest.raises(VariantError) as caught:
        make_split(entries, where="fraud variants")
    assert "fraud variants" in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_specs_and_canary_arithmetic():
    assert parse_spec("4:10") == (None, "4", 10.0)
    assert parse_spec("canary=4:2.5") == ("canary", "4", 2.5)
    for bad in ("4", "4=10", "x:10", "4:-1"):
        with pytest.raises(VariantError, match="variant"):
            parse_spec(bad)
    step = with_canary(solo(3), 4, 10)
    assert step == (Variant("v3", "3", 90.0), Variant("v4", "4", 10.0))
    # the next step keeps the others' proportions; the canary keeps its name
    named = with_canary(solo(3), 4, 10, "canary")
    assert with_canary(named, 4, 50) == (Variant("v3", "3", 50.0), Variant("canary", "4", 50.0))
    three = make_split([(None, 3, 60), (None, 5, 30), (None, 6, 10)], primary=3)
    assert [x.weight for x in with_canary(three, 4, 10)] == [54.0, 10.0, 27.0, 9.0]
    for percent in (0, 100, 150, -5):
        with pytest.raises(VariantError, match="above 0 and below 100"):
            with_canary(solo(3), 4, percent)
    with pytest.raises(VariantError, match="production version already"):
        with_canary(step, 3, 20)
    assert without(step, 4) == solo(3) and without(make_split([(None, 3, 0), (None, 4, 1)]), 4) is None


def test_replay_restores_splits():
    s1 = to_json(with_canary(solo(3), 4, 10))
    s2 = to_json(with_canary(solo(3), 4, 50))
    moves = [("promote", 3, None), ("split", 3, s1), ("split", 3, s2), ("promote", 4, None)]
    assert earlier_states(moves, ("4", None)) == (("3", s2), ("3", s1), ("3", None))
    assert earlier_production(moves, "4") == ("3",)
    # a rollback pops to the state it went to: the split before the last step
    back = [*moves, ("rollback", 3, s2)]
    assert earlier_states(back, ("3", s2)) == (("3", s1), ("3", None))
    # the old two-field moves still replay as before
    assert earlier_production([("promote", 1), ("promote", 2)], "2") == ("1",)


# ---- the registry ----


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """fraud versions 1..5 exported (and so registered); 1..4 approved, 5 pending."""
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("variants") / "models"
    pipeline, X = fraud_pipeline()
    for _ in range(5):
        export_model(pipeline, name="fraud", repository=root, sample=X.iloc[:20])
    reg = Registry(root)
    for v in ("1", "2", "3", "4"):
        reg.approve("fraud", v)
    return root


@pytest.fixture
def registry(template, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(template, root)
    return Registry(root)


def test_canary_steps_and_rollbacks_walk_back_the_splits(registry):
    reader = StageReader(registry.db_path)
    registry.promote("fraud", 3, "production")
    assert registry.split("fraud") == solo(3) and reader.read()["fraud"].variants == ()
    before, after = registry.canary("fraud", 4, 10, actor="ci")
    assert (before, describe(after)) == (solo(3), "v3=3:90% v4=4:10%")
    registry.canary("fraud", 4, 50)
    assert describe(registry.split("fraud")) == "v3=3:50% v4=4:50%"
    stages = reader.read()["fraud"]
    assert (stages.production, describe(stages.variants)) == ("3", "v3=3:50% v4=4:50%")
    registry.canary("fraud", 4, 100)  # the last step: v4 takes it all
    assert registry.split("fraud") == solo(4) and registry.aliases("fraud")["production"] == "4"
    assert reader.read()["fraud"].variants == () and reader.read()["fraud"].earlier_production == ("3",)
    # each rollback restores the state before, split and all
    assert registry.rollback("fraud") == ("4", "3")
    assert describe(registry.split("fraud")) == "v3=3:50% v4=4:50%"
    assert describe(reader.read()["fraud"].variants) == "v3=3:50% v4=4:50%"
    assert registry.rollback("fraud") == ("3", "3")
    assert describe(registry.split("fraud")) == "v3=3:90% v4=4:10%"
    assert registry.rollback("fraud") == ("3", "3")
    assert registry.split("fraud") == solo(3)
    with pytest.raises(RegistryError, match="no earlier production version"):
        registry.rollback("fraud")
    moves = [(h.action, h.version, h.split) for h in reversed(registry.history("fraud")) if h.stage == "production"]
    assert [a for a, _, _ in moves] == ["promote", "split", "split", "promote", "rollback", "rollback", "rollback"]
    canary = next(h for h in registry.history("fraud") if h.detail.startswith("canary 4 at 10%"))
    assert (canary.actor, canary.version, canary.previous) == ("ci", "3", "3")
    assert canary.detail == "canary 4 at 10%: v3=3:90% v4=4:10%" and from_json(canary.split) == after


def test_set_split_and_its_refusals(registry):
    registry.promote("fraud", 2, "production")
    before, after = registry.set_split("fraud", [(None, 2, 80), ("green", 3, 15), (None, 4, 5)])
    assert before == solo(2) and describe(after) == "v2=2:80% green=3:15% v4=4:5%"
    assert registry.set_split("fraud", [(None, 4, 80), ("green", 3, 20)])[1][0] == Variant("v4", "4", 80.0)
    assert registry.aliases("fraud")["production"] == "4"  # 2 left the split: the heaviest is production
    with pytest.raises(RegistryError, match="fraud/5 is pending; approve it before production"):
        registry.set_split("fraud", [(None, 4, 50), (None, 5, 50)])
    with pytest.raises(RegistryError, match="fraud/9 is not registered"):
        registry.set_split("fraud", [(None, 4, 50), (None, 9, 50)])
    with pytest.raises(RegistryError, match="fraud variants: weights sum to 0"):
        registry.set_split("fraud", [(None, 4, 0), (None, 3, 0)])
    with pytest.raises(RegistryError, match="fraud/3 serves as production variant green=3:20%"):
        registry.approve("fraud", 3, reject=True)
    with pytest.raises(RegistryError, match="serves as production variant green"):
        registry.delete("fraud", 3)
    assert describe(registry.split("fraud")) == "v4=4:80% green=3:20%"  # the refusals changed nothing
    registry.set_split("fraud", [(None, 4, 50), (None, 5, 50)], force=True)
    registry.delete("fraud", 5, force=True)  # its share goes to the others
    assert registry.split("fraud") == solo(4)
    assert registry.history("fraud", 2)[1].detail.startswith("without version 5")
    with pytest.raises(RegistryError, match="no production version for a canary"):
        Registry(registry.repository).canary("other", 1, 10)


def test_promote_ends_a_split_and_clear_takes_it_along(registry):
    registry.promote("fraud", 1, "production")
    registry.canary("fraud", 2, 25)
    assert registry.promote("fraud", 1, "production") == "1"  # back to v1 alone: the canary is over
    assert registry.split("fraud") == solo(1)
    registry.canary("fraud", 2, 25)
    registry.clear_stage("fraud", "production", force=True)
    assert registry.split("fraud") == ()
    with closing(sqlite3.connect(registry.db_path)) as db:
        assert db.execute("SELECT COUNT(*) FROM variants").fetchone()[0] == 0


def test_a_version_1_file_is_upgraded_and_read_before_it_is(registry):
    registry.promote("fraud", 2, "production")
    registry.promote("fraud", 3, "production")
    with closing(sqlite3.connect(registry.db_path)) as db:  # back to what onyxserve wrote before variants
        db.execute("DROP TABLE variants")
        db.execute("ALTER TABLE history DROP COLUMN split")
        db.execute("PRAGMA user_version = 1")
        db.commit()
    stages = StageReader(registry.db_path).read()["fraud"]  # read-only: not upgraded, still read
    assert (stages.production, stages.earlier_production, stages.variants) == ("3", ("2",), ())
    upgraded = Registry(registry.repository)
    with closing(sqlite3.connect(registry.db_path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    upgraded.canary("fraud", 4, 10)
    assert upgraded.rollback("fraud") == ("3", "3") and upgraded.split("fraud") == solo(3)
    assert upgraded.rollback("fraud") == ("3", "2")  # the old rows replay as they did


# ---- config.json ----


@pytest.mark.parametrize("value,words", [
    ("3:90", ("'variants' must be a list",)),
    ([{"version": 3}], ("'variants'[0]", "'version', 'weight'")),
    ([{"version": 3, "weight": 1, "share": 2}], ("'variants'[0]",)),
    ([{"version": 3, "weight": 0}], ("'variants'", "sum to 0")),
    ([{"version": 3, "weight": 1}, {"version": 3, "weight": 1}], ("'variants'", "version '3' appears twice")),
])
def test_config_json_variants_are_checked_naming_the_key(tmp_path, value, words):
    import json

    from onyxserve.repository.config import ConfigError, ModelConfig

    (tmp_path / "config.json").write_text(json.dumps({"variants": value}))
    with pytest.raises(ConfigError) as caught:
        ModelConfig.load(tmp_path)
    assert str(tmp_path / "config.json") in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_config_json_variants_do_not_make_another_config(tmp_path):
    import json

    from onyxserve.repository.config import ModelConfig

    (tmp_path / "config.json").write_text(json.dumps(
        {"max_batch_size": 8, "variants": [{"version": 3, "weight": 3}, {"version": 4, "weight": 1, "name": "canary"}]}))
    config = ModelConfig.load(tmp_path)
    assert describe(config.variants) == "v3=3:75% canary=4:25%" and config.variant_versions() == ["3", "4"]
    # a loaded version keeps serving through a change of weights: the split is not part of equality
    assert config == ModelConfig(max_batch_size=8)
