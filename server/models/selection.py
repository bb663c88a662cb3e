"""Which versions of a model serve, as pure functions of what is known at a scan.

The manager (``manager.py``) does the I/O -- reading config.json, the registry snapshot and the
version folders, loading, switching, unloading -- and asks these functions what to do at each
step. The inputs are plain values: the model's ``ModelConfig``, the version folders on disk
(``available``, numeric order), the registry's ``ModelStages``, the roles the loaded versions
serve as now (stage -> version) and the versions serving now (``serving``).

Two regimes:

- **version_policy** (config.json, Triton's rule) when the registry sets no production stage for
  the model, or stages are off: ``policy_versions`` are loaded, and the others are unloaded only
  once one of them serves (``policy_unloads``), so a broken new version never takes the model
  down.
- **stages** when the registry sets a production version: the first of
  ``production_candidates`` that loads serves as production; shadow and staging load their
  targets (``side_targets``); ``staged_roles`` says who serves as what afterwards (the old holder
  of a stage keeps it until the new one can serve); ``staged_unloads`` are the versions no role
  keeps.

Production variants (several versions sharing production traffic by weight): the registry's
split in the stages regime, config.json's ``variants`` in the version_policy regime.
``variant_targets`` are the versions to load for them, ``served_split`` is the split requests
without a version are routed over once loaded (``variants.Router``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from onyxserve.repository.config import ModelConfig
from onyxserve.repository.stages import SERVED_STAGES, ModelStages
from onyxserve.repository.variants import Split, Variant, default_name, solo

# served stages other than production: loaded beside it, reached by explicit version only
SIDE_STAGES = tuple(s for s in SERVED_STAGES if s != "production")


def stage_controlled(stages: ModelStages | None) -> bool:
    """True when the registry decides what the model serves (it sets a production version);
    otherwise config.json's version_policy does."""
    return stages is not None and stages.production is not None


def policy_versions(config: ModelConfig, available: list[str]) -> list[str]:
    """The versions config.json's version_policy serves, in numeric order."""
    return config.select_versions(available)


def policy_unloads(wanted: Collection[str], serving: Iterable[str]) -> list[str]:
    """Serving versions outside the policy, to unload once the wanted ones were loaded; none
    while no wanted version serves (a failed load must not leave the model with nothing)."""
    serving = list(serving)
    if not any(v in serving for v in wanted):
        return []
    return [v for v in serving if v not in wanted]


def production_candidates(
    stages: ModelStages, available: Collection[str], roles: Mapping[str, str]
) -> list[str]:
    """The versions to try as production, in order, each once: the registry's production
    version, the version serving as production now, then the versions that held production
    before (newest first, the order ``registry rollback`` walks). Only versions whose folder
    exists; the first that loads serves."""
    candidates = [stages.production, roles.get("production"), *stages.earlier_production]
    return [v for v in dict.fromkeys(candidates) if v and v in available]


def side_targets(stages: ModelStages, available: Collection[str]) -> list[tuple[str, str]]:
    """(stage, version) to load beside production: each side stage's target whose folder
    exists, in stage order."""
    return [
        (stage, target)
        for stage in SIDE_STAGES
        if (target := stages.aliases.get(stage)) is not None and target in available
    ]


def staged_roles(
    production: str,
    stages: ModelStages,
    available: Collection[str],
    before: Mapping[str, str],
    serving: Collection[str],
) -> dict[str, str]:
    """Who serves as which stage once production and the side targets were loaded. A side
    stage goes to its target when that serves; else its previous holder keeps it while it still
    serves (the old holder serves until the new one can); a stage the registry cleared is
    dropped."""
    roles = {"production": production}
    for stage in SIDE_STAGES:
        target = stages.aliases.get(stage)
        if target is None:
            continue
        if target in available and target in serving:
            roles[stage] = target
        elif before.get(stage) in serving:
            roles[stage] = before[stage]
    return roles


def staged_unloads(roles: Mapping[str, str], serving: Iterable[str], split: Split = ()) -> list[str]:
    """Serving versions no stage and no production variant keeps any more."""
    keep = set(roles.values()) | {x.version for x in split}
    return [v for v in serving if v not in keep]


def staged_states(roles: Mapping[str, str], stages: ModelStages) -> set[str]:
    """Versions whose state RepositoryIndex keeps showing: those serving a role, and every
    served stage's and production variant's target (one that cannot be served says why)."""
    targets = {stages.aliases[s] for s in SERVED_STAGES if s in stages.aliases}
    return set(roles.values()) | targets | {x.version for x in stages.variants}


def wanted_split(stages: ModelStages) -> Split:
    """The registry's production split: its variants, or the production version alone."""
    return stages.variants or (solo(stages.production) if stages.production else ())


def variant_targets(split: Split, available: Collection[str]) -> list[str]:
    """The versions of ``split`` to load, in split order (primary first), whose folder exists."""
    return [x.version for x in split if x.version in available]


def served_split(split: Split, production: str | None, serving: Collection[str]) -> Split:
    """The variants requests without a version are spread over now, from the wanted ``split``.

    Registry split (``production``: the version serving as production): the primary's share is
    served by that version even while it stands in for a primary that cannot serve (under its
    default name unless the primary was named; one variant with the stand-in's own if it has
    one). Any other variant whose version does not serve is left out: its share goes to the rest
    by weight, so a broken canary never takes traffic from the model. config.json's split
    (``production`` None): the variants whose version serves. Registry: at least the production
    version alone; config: () when nothing with a positive weight serves (the default version
    then answers, as without variants)."""
    out: list[Variant] = []
    for i, x in enumerate(split):
        if i == 0 and production is not None and x.version != production:
            name = default_name(production) if x.name == default_name(x.version) else x.name
            x = Variant(name, production, x.weight)
        if x.version not in serving:
            continue
        same = next((j for j, y in enumerate(out) if y.version == x.version), None)
        if same is None:
            out.append(x)
        else:  # the stand-in already has a variant of its own: one variant, both shares
            out[same] = Variant(out[same].name, x.version, out[same].weight + x.weight)
    if not any(x.weight > 0 for x in out):
        return solo(production) if production is not None and production in serving else ()
    return tuple(out)


def default_version(serving: Collection[str], roles: Mapping[str, str]) -> str | None:
    """The version a request without one goes to: production when it serves, else the highest
    version serving (Triton's rule); None when nothing serves."""
    if not serving:
        return None
    production = roles.get("production")
    return production if production in serving else max(serving, key=int)
