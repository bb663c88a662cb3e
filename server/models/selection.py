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
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from onyxserve.repository.config import ModelConfig
from onyxserve.repository.stages import SERVED_STAGES, ModelStages

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


def staged_unloads(roles: Mapping[str, str], serving: Iterable[str]) -> list[str]:
    """Serving versions no stage keeps any more."""
    keep = set(roles.values())
    return [v for v in serving if v not in keep]


def staged_states(roles: Mapping[str, str], stages: ModelStages) -> set[str]:
    """Versions whose state RepositoryIndex keeps showing: those serving a role, and every
    served stage's target (one that cannot be served says why)."""
    targets = {stages.aliases[s] for s in SERVED_STAGES if s in stages.aliases}
    return set(roles.values()) | targets


def default_version(serving: Collection[str], roles: Mapping[str, str]) -> str | None:
    """The version a request without one goes to: production when it serves, else the highest
    version serving (Triton's rule); None when nothing serves."""
    if not serving:
        return None
    production = roles.get("production")
    return production if production in serving else max(serving, key=int)
