"""Which versions serve, decided without a server: the cases manager.py's docstrings describe."""

from __future__ import annotations

from onyxserve.repository.config import ModelConfig
from onyxserve.repository.stages import ModelStages
from onyxserve.repository.variants import Variant, make_split, solo
from onyxserve.server.models.selection import (
    SIDE_STAGES,
    default_version,
    policy_unloads,
    policy_versions,
    production_candidates,
    served_split,
    side_targets,
    stage_controlled,
    staged_roles,
    staged_states,
    staged_unloads,
    variant_targets,
    wanted_split,
)

AVAILABLE = ["1", "2", "3", "4", "5"]


def stages(earlier: tuple[str, ...] = (), **aliases: str) -> ModelStages:
    return ModelStages(aliases=aliases, earlier_production=earlier)


# -- which regime ----------------------------------------------------------------------------


def test_a_production_stage_hands_the_model_to_the_registry():
    assert stage_controlled(stages(production="3"))
    assert not stage_controlled(None)  # no registry, or version_source = config
    assert not stage_controlled(stages())
    assert not stage_controlled(stages(staging="4", shadow="2"))  # stages without production: the policy
    assert SIDE_STAGES == ("shadow", "staging")  # archived is never loaded


# -- version_policy ----------------------------------------------------------------------------


def test_policy_versions():
    assert policy_versions(ModelConfig(), AVAILABLE) == ["5"]
    assert policy_versions(ModelConfig(num_versions=2), AVAILABLE) == ["4", "5"]
    assert policy_versions(ModelConfig(num_versions=0), AVAILABLE) == ["5"]  # latest: at least one
    assert policy_versions(ModelConfig(version_policy="all"), AVAILABLE) == AVAILABLE
    specific = ModelConfig(version_policy="specific", versions=("2", "4", "9"))
    assert policy_versions(specific, AVAILABLE) == ["2", "4"]
    assert policy_versions(ModelConfig(), []) == []


def test_policy_unloads_only_once_a_wanted_version_serves():
    assert policy_unloads(["5"], ["4", "5"]) == ["4"]
    assert policy_unloads(["4", "5"], ["3", "4"]) == ["3"]  # 5 failed, 4 serves: 3 can go
    # the new latest failed to load: the old one keeps serving rather than nothing
    assert policy_unloads(["5"], ["4"]) == []
    assert policy_unloads(["5"], []) == []
    assert policy_unloads(["5"], ["5"]) == []


# -- production ------------------------------------------------------------------------------


def test_production_candidates_in_fallback_order():
    # the registry's production, the one serving as production now, then the earlier holders
    s = stages(("3", "2", "1"), production="4")
    assert production_candidates(s, AVAILABLE, {"production": "3"}) == ["4", "3", "2", "1"]
    assert production_candidates(s, AVAILABLE, {"production": "5"}) == ["4", "5", "3", "2", "1"]
    assert production_candidates(s, AVAILABLE, {}) == ["4", "3", "2", "1"]  # start-up: nothing serves yet
    # each once, and only versions whose folder exists
    assert production_candidates(s, ["1", "3"], {"production": "3"}) == ["3", "1"]
    assert production_candidates(stages(production="9"), AVAILABLE, {}) == []  # nothing to try: the policy


def test_side_targets_are_loaded_when_their_folder_exists():
    both = stages(production="3", shadow="4", staging="5")
    assert side_targets(both, AVAILABLE) == [("shadow", "4"), ("staging", "5")]
    assert side_targets(stages(production="3", staging="9"), AVAILABLE) == []
    assert side_targets(stages(production="3", archived="1"), AVAILABLE) == []
    # a version holding two stages is loaded for each (as the manager always did)
    same = stages(production="3", shadow="4", staging="4")
    assert side_targets(same, AVAILABLE) == [("shadow", "4"), ("staging", "4")]


# -- shadow and staging: the old holder serves until the new one can ---------------------------


def test_new_side_targets_take_over_once_they_serve():
    s = stages(production="3", shadow="4", staging="5")
    before = {"production": "3", "shadow": "2", "staging": "1"}
    roles = staged_roles("3", s, AVAILABLE, before, ["1", "2", "3", "4", "5"])
    assert roles == {"production": "3", "shadow": "4", "staging": "5"}
    assert staged_unloads(roles, ["1", "2", "3", "4", "5"]) == ["1", "2"]


def test_a_side_target_that_cannot_serve_leaves_the_old_holder():
    s = stages(production="3", shadow="4", staging="9")  # 4 failed to load, 9 has no folder
    before = {"production": "3", "shadow": "2", "staging": "1"}
    serving = ["1", "2", "3"]
    roles = staged_roles("3", s, AVAILABLE, before, serving)
    assert roles == {"production": "3", "shadow": "2", "staging": "1"}
    assert staged_unloads(roles, serving) == []
    # RepositoryIndex keeps the unserved targets' states, which say why
    assert staged_states(roles, s) == {"1", "2", "3", "4", "9"}


def test_a_side_target_serving_but_gone_from_disk_is_not_taken():
    # version 4 still loaded from before, its folder removed: it does not become the shadow
    s = stages(production="3", shadow="4")
    roles = staged_roles("3", s, ["1", "2", "3"], {"production": "3", "shadow": "2"}, ["2", "3", "4"])
    assert roles == {"production": "3", "shadow": "2"}
    assert staged_unloads(roles, ["2", "3", "4"]) == ["4"]


def test_no_old_holder_means_nothing_serves_as_that_stage():
    s = stages(production="3", shadow="4")
    roles = staged_roles("3", s, AVAILABLE, {"production": "3"}, ["3"])
    assert roles == {"production": "3"}
    # an old holder that no longer serves cannot keep the stage either
    assert staged_roles("3", s, AVAILABLE, {"production": "3", "shadow": "2"}, ["3"]) == {"production": "3"}


def test_a_cleared_stage_is_dropped_and_its_version_unloaded():
    s = stages(production="3")  # `registry clear-stage fraud shadow`
    serving = ["2", "3"]
    roles = staged_roles("3", s, AVAILABLE, {"production": "3", "shadow": "2"}, serving)
    assert roles == {"production": "3"}
    assert staged_unloads(roles, serving) == ["2"]
    assert staged_states(roles, s) == {"3"}


def test_production_falls_back_and_the_rest_follows():
    # production 4 cannot load: the manager took 3 (the next candidate); 4 keeps its state
    s = stages(("3",), production="4", staging="4")
    roles = staged_roles("3", s, AVAILABLE, {}, ["3"])
    assert roles == {"production": "3"}
    assert staged_states(roles, s) == {"3", "4"}
    # one version may hold several stages; it is unloaded by none of them
    roles = staged_roles("3", stages(production="3", shadow="3"), AVAILABLE, {}, ["3"])
    assert roles == {"production": "3", "shadow": "3"} and staged_unloads(roles, ["3"]) == []


# -- requests without a version --------------------------------------------------------------


def test_default_version():
    assert default_version(["1", "2", "10"], {}) == "10"  # the highest, numerically (Triton)
    assert default_version(["1", "2", "10"], {"production": "2"}) == "2"
    assert default_version(["1", "10"], {"production": "2"}) == "10"  # production not loaded: highest
    assert default_version([], {"production": "2"}) is None
    assert default_version({"3": object(), "4": object()}, {"shadow": "4"}) == "4"  # a mapping works too


# -- production variants ---------------------------------------------------------------------


def test_the_wanted_split_and_its_versions():
    split = make_split([(None, 3, 90), (None, 4, 10)], primary=3)
    assert wanted_split(ModelStages({"production": "3"}, variants=split)) == split
    assert wanted_split(stages(production="3")) == solo(3) and wanted_split(stages()) == ()
    assert variant_targets(make_split([(None, 3, 1), (None, 9, 1)], primary=3), AVAILABLE) == ["3"]
    # a variant's version is kept loaded and its state shown, like a stage's
    assert staged_unloads({"production": "3"}, ["2", "3", "4"], split) == ["2"]
    assert staged_states({"production": "3"}, ModelStages({"production": "3"}, variants=split)) == {"3", "4"}


def test_served_split_leaves_out_what_cannot_serve():
    split = make_split([(None, 3, 80), ("canary", 4, 10), (None, 5, 10)], primary=3)
    assert served_split(split, "3", {"3", "4", "5"}) == split
    # a canary that does not serve is left out: the others keep their weights (the router normalizes)
    assert served_split(split, "3", {"3", "5"}) == (Variant("v3", "3", 80.0), Variant("v5", "5", 10.0))
    # a stand-in serves the primary's share, under its own default name
    assert served_split(split, "2", {"2", "4", "5"})[0] == Variant("v2", "2", 80.0)
    # ... merged with its own variant when it has one
    assert served_split(split, "5", {"4", "5"}) == (Variant("v5", "5", 90.0), Variant("canary", "4", 10.0))
    named = make_split([("blue", 3, 50), (None, 4, 50)], primary=3)
    assert served_split(named, "2", {"2", "4"})[0] == Variant("blue", "2", 50.0)
    # nothing with weight left: production alone (registry), nothing (config.json)
    zero = make_split([(None, 3, 0), (None, 4, 1)], primary=3)
    assert served_split(zero, "3", {"3"}) == solo(3)
    assert served_split(zero, None, {"3"}) == () and served_split(zero, None, {"3", "4"}) == zero
    assert served_split((), None, {"3"}) == ()
