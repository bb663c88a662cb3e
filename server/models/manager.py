"""The served side of the model repository: which versions are loaded, and why not.

Loading (reading files, checking the sha256, building the ORT session) runs in a thread, so
the server keeps answering while a model loads. A version that fails to load is reported with
its reason (RepositoryIndex, the log) and the versions already serving keep serving: a broken
new version never takes an old one down.

Which versions serve: a model with a ``production`` stage in the registry (``registry.db``, read
through ``repository/stages.py``) serves its production version by default and also loads the
versions holding ``shadow`` and ``staging`` (reached by explicit version); config.json's
version_policy is then not used. A model without a production stage, or any model when the
version source is ``config`` or there is no registry, follows version_policy. A stage change is
applied as load the new version, switch, then unload the old one (it drains its queue), so no
request is dropped; a stage pointing at a version that is missing or fails to load leaves the
previous holder serving and says why in RepositoryIndex and the log.

Production variants: requests without a version are routed (``route``) over the model's served
split (``variants.Router``) -- the registry's split of production traffic, or config.json's
``variants`` for a model the registry does not control. Their versions are loaded like stages;
a new split is swapped in whole once they serve, with no reload of a version already serving;
a variant that cannot be served is left out (its share goes to the others) and says why.

The decisions (which versions to try, who holds which stage, what to unload) are the pure
functions of ``selection.py``; this module does the loading, switching and unloading they ask for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onyxserve.core.scorer import ModelLoadError
from onyxserve.repository.config import ConfigError, ModelConfig
from onyxserve.repository.stages import SERVED_STAGES, ModelStages, StageReader, StageReadError
from onyxserve.repository.store import MANIFEST_FILE, list_models, list_versions
from onyxserve.repository.variants import Split, Variant
from onyxserve.server.drift.monitor import DriftSettings
from onyxserve.server.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    RepositoryError,
    VariantNotFound,
)
from onyxserve.server.metrics import MODEL_STAGE, VARIANT_SHARE
from onyxserve.server.models.selection import (
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
from onyxserve.server.models.served import ServedModel
from onyxserve.server.models.variants import Router, Routing

log = logging.getLogger(__name__)

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


@dataclass
class VersionState:
    name: str
    version: str
    state: str
    reason: str = ""
    stages: tuple[str, ...] = ()  # registry stages this version serves as
    variant: str = ""  # the production variant it serves as, e.g. "v4=4:10%"


def _fingerprint(path: Path) -> float:
    """Changes when a version's files (or the model's config) are replaced."""
    try:
        return max(p.stat().st_mtime_ns for p in (path, *path.iterdir()))
    except OSError:
        return -1.0


class ModelRepository:
    def __init__(
        self,
        root: Path,
        *,
        intra_op_threads: int,
        unload_grace_s: float = 5.0,
        on_change: Callable[[str, bool], None] | None = None,
        stage_reader: StageReader | None = None,
        drift: DriftSettings | None = None,
    ) -> None:
        self.root = Path(root)
        self._threads = intra_op_threads
        self._drift = DriftSettings.from_environment() if drift is None else drift  # default: on
        self._unload_grace = unload_grace_s
        self._on_change = on_change or (lambda name, serving: None)
        self._served: dict[str, dict[str, ServedModel]] = {}  # name -> version -> model
        self._default: dict[str, ServedModel] = {}  # name -> highest ready version
        self._states: dict[tuple[str, str], VersionState] = {}
        self._failed: dict[tuple[str, str], float] = {}  # failed load -> fingerprint it failed at
        self._errors: dict[tuple[str, str], str] = {}  # failed load -> why
        self._lock = asyncio.Lock()
        # registry stages: None reader = version_source "config" (stages never read)
        self._stage_reader = stage_reader
        self._stages: dict[str, ModelStages] = {}  # last good read
        self._registry_problem = ""  # why the last read failed ("" = it did not)
        self._roles: dict[str, dict[str, str]] = {}  # name -> stage -> version serving as it
        self._reported: dict[tuple[str, str], str] = {}  # (name, stage) -> unserved reason logged
        self._splits: dict[str, Split] = {}  # name -> the production split wanted (registry or config.json)
        self._routers: dict[str, Router] = {}  # name -> the split as served (read on the request path)

    # ---- lookups (hot path) ----

    def get(self, name: str, version: str = "") -> ServedModel:
        if not version:
            model = self._default.get(name)
            if model is not None:
                return model
        else:
            model = self._served.get(name, {}).get(version)
            if model is not None:
                return model
        states = [s for s in self._states.values() if s.name == name and (not version or s.version == version)]
        if states:
            reasons = "; ".join(s.reason for s in states if s.reason)
            label = f"model '{name}'" + (f" version {version}" if version else "")
            raise ModelNotReady(f"{label} is not ready" + (f": {reasons}" if reasons else ""))
        if version and name in self._served:
            raise ModelNotFound(f"model '{name}' has no version '{version}'; serving {sorted(self._served[name])}")
        raise ModelNotFound(f"model '{name}' not found; serving {sorted(self._served) or 'no models'}")

    def route(self, name: str, version: str, routing: Routing) -> tuple[ServedModel, str | None]:
        """The version that answers a request, and the production variant it was routed to
        (None when the request named a version, or the model has no variants). Hot path: dict
        lookups, and one hash per variant for a routing key."""
        if version:
            if routing.variant is not None:
                raise InvalidInput(
                    f"model '{name}': a request names a version or a variant, not both"
                    f" (version {version!r}, variant {routing.variant!r})"
                )
            return self.get(name, version), None
        router = self._routers.get(name)
        if router is None:
            model = self.get(name)  # ModelNotFound / ModelNotReady when nothing serves
            if routing.variant is not None:
                raise VariantNotFound(
                    f"model '{name}' has no production variants; variant {routing.variant!r} is not one"
                )
            return model, None
        if routing.variant is None:
            variant, model = router.choose(routing.key)
            return model, variant.name
        chosen = router.named(routing.variant)
        if chosen is None:
            self._variant_missing(name, routing.variant, router)
        return chosen[1], routing.variant

    def _variant_missing(self, name: str, variant: str, router: Router) -> None:
        wanted = next((x for x in self._splits.get(name, ()) if x.name == variant), None)
        if wanted is not None:  # in the split, but its version does not serve
            state = self._states.get((name, wanted.version))
            why = f": {state.reason}" if state is not None and state.reason else ""
            raise ModelNotReady(f"model '{name}' variant '{variant}' (version {wanted.version}) is not ready{why}")
        raise VariantNotFound(f"model '{name}' has no variant '{variant}'; its variants: {router.describe()}")

    def variant_of(self, name: str, version: str) -> tuple[Variant, float] | None:
        """The production variant ``name``/``version`` serves as, and its share (0..1)."""
        router = self._routers.get(name)
        if router is None:
            return None
        return next(((v, router.share(v)) for v, m in router.entries if m.version == version), None)

    def routed_versions(self, name: str) -> list[str]:
        """The versions serving as ``name``'s production variants now (primary first)."""
        router = self._routers.get(name)
        return [] if router is None else [m.version for _, m in router.entries]

    def ready_models(self) -> list[ServedModel]:
        return [m for versions in self._served.values() for m in versions.values()]

    def versions(self, name: str) -> list[str]:
        return sorted(self._served.get(name, {}), key=int)

    def stages_of(self, name: str, version: str) -> tuple[str, ...]:
        """The registry stages ``name``/``version`` is serving as (empty when not stage-controlled)."""
        roles = self._roles.get(name, {})
        return tuple(stage for stage, v in roles.items() if v == version)

    def stage_holder(self, name: str, stage: str) -> ServedModel | None:
        """The loaded version serving as ``stage`` (None when none does). Read on the request path
        (shadow mirroring), so plain dict lookups only."""
        roles = self._roles.get(name)
        if roles is None:
            return None
        version = roles.get(stage)
        if version is None:
            return None
        return self._served.get(name, {}).get(version)

    def index(self) -> list[VersionState]:
        """Every model folder and version known, loaded or not, for RepositoryIndex."""
        seen = {(s.name, s.version) for s in self._states.values()}
        extra = [
            VersionState(name, "", UNAVAILABLE, "not loaded")
            for name in list_models(self.root)
            if not any(n == name for n, _ in seen)
        ]
        states = [self._with_stages(s) for s in self._states.values()]
        return sorted([*states, *extra], key=lambda s: (s.name, s.version))

    def _with_stages(self, s: VersionState) -> VersionState:
        """A serving version's state, its registry stages named in the reason (what a Triton
        user reads in RepositoryIndex) and in ``stages`` (the HTTP index)."""
        held = self.stages_of(s.name, s.version)
        variant = self.variant_of(s.name, s.version)
        if (not held and variant is None) or s.version not in self._served.get(s.name, {}):
            return s
        aliases = self._stages.get(s.name, ModelStages()).aliases
        reason = "registry stage: " + ", ".join(held) if held else ""
        standing_in = [f"{stage} is version {aliases[stage]}" for stage in held if aliases.get(stage, s.version) != s.version]
        if standing_in:
            reason += f" (standing in: {', '.join(standing_in)})"
        shown = ""
        if variant is not None and len(self._routers[s.name].entries) > 1:  # a split: say its share
            shown = f"{variant[0].name}={s.version}:{100 * variant[1]:.4g}%"
            reason = "; ".join(r for r in (reason, f"production variant {shown} of requests without a version") if r)
        if self._registry_problem and held:
            reason += f"; registry unreadable, using the stages last read: {self._registry_problem}"
        return VersionState(s.name, s.version, s.state, "; ".join(r for r in (reason, s.reason) if r), held, shown)

    # ---- changes ----

    async def scan(self) -> None:
        """Bring every model folder in line with the disk and the registry (poll mode, start-up)."""
        async with self._lock:
            stages = await self._read_stages()
            names = set(list_models(self.root))
            for name in sorted(names):
                await self._sync_model(name, explicit=False, stages=stages.get(name))
            for name in sorted(set(self._served) - names):
                await self._unload_all(name, "model folder removed")
            self._apply_thresholds()

    async def load(self, name: str) -> None:
        """Explicit load (or reload) of one model; raises RepositoryError when nothing serves."""
        async with self._lock:
            if not (self.root / name).is_dir():
                raise RepositoryError(f"model '{name}' is not in repository {self.root}")
            stages = await self._read_stages()
            await self._sync_model(name, explicit=True, stages=stages.get(name))
            self._apply_thresholds()
            if not self._served.get(name):
                reasons = [s.reason for s in self._states.values() if s.name == name and s.reason]
                raise RepositoryError(f"model '{name}' failed to load: {'; '.join(reasons) or 'no versions'}")

    async def unload(self, name: str) -> None:
        async with self._lock:
            if name not in self._served and not any(s.name == name for s in self._states.values()):
                raise RepositoryError(f"model '{name}' is not loaded")
            await self._unload_all(name, "unloaded by request")

    async def close(self, grace_s: float) -> None:
        async with self._lock:
            for name, router in self._routers.items():  # nothing is routed any more
                for variant, model in router.entries:
                    VARIANT_SHARE.labels(name, model.version, variant.name).set(0)
            self._routers.clear()
            await asyncio.gather(*(m.stop(grace_s) for m in self.ready_models()))
            self._served.clear()
            self._default.clear()

    def _apply_thresholds(self) -> None:
        """Each served version takes the decision threshold the registry holds for it (binary
        models; None answers the graph's own label). A plain attribute: no reload, no pause."""
        for name, versions in self._served.items():
            thresholds = self._stages.get(name, ModelStages()).thresholds
            for version, model in versions.items():
                threshold = thresholds.get(version) if model.manifest.task == "binary" else None
                if threshold != model.threshold:
                    log.info("model %s version %s: decision threshold %s", name, version, threshold)
                    model.threshold = threshold

    async def _read_stages(self) -> dict[str, ModelStages]:
        """Every model's stages; {} when stages are off or there is no registry. An unreadable
        registry keeps the stages last read (what serves does not change because of it)."""
        reader = self._stage_reader
        if reader is None or not reader.exists():
            self._stages, self._registry_problem = {}, ""
            return self._stages
        try:
            self._stages = await asyncio.to_thread(reader.read)
        except StageReadError as exc:
            if str(exc) != self._registry_problem:
                log.warning("registry stages not read, keeping the stages last read: %s", exc)
            self._registry_problem = str(exc)
            return self._stages
        if self._registry_problem:
            log.info("registry %s readable again", reader.db_path)
        self._registry_problem = ""
        return self._stages

    async def _sync_model(self, name: str, *, explicit: bool, stages: ModelStages | None) -> None:
        model_dir = self.root / name
        try:
            config = ModelConfig.load(model_dir)
        except ConfigError as exc:
            self._set_state(name, "", UNAVAILABLE, str(exc))
            log.error("%s", exc)
            return
        self._states.pop((name, ""), None)
        available = list_versions(model_dir)
        if stage_controlled(stages):
            if await self._sync_staged(name, config, stages, available, explicit):
                return
            log.error("model %s: no production candidate can be served; falling back to the version_policy", name)
        await self._sync_policy(name, config, available, explicit)
        if stage_controlled(stages):
            self._report_unserved(name, stages, "serving by config.json's version_policy instead")

    async def _sync_policy(self, name: str, config: ModelConfig, available: list[str], explicit: bool) -> None:
        """Today's Triton-style selection: config.json's version_policy, plus its variants
        (each routed to as soon as it serves: none of them is production to switch from)."""
        self._splits[name] = config.variants
        self._set_roles(name, {})
        self._refresh_router(name)
        variants = variant_targets(config.variants, available)
        wanted = sorted(set(policy_versions(config, available)) | set(variants), key=int)
        if not wanted:
            self._set_state(name, "", UNAVAILABLE, f"no version folders in {self.root / name}")
            return
        for version in wanted:
            await self._ensure_loaded(name, version, config, explicit)
        for version in policy_unloads(wanted, list(self._served.get(name, {}))):
            await self._unload_version(name, version, "not selected by the version policy")
        self._drop_stale_states(name, keep=set(wanted) | set(config.variant_versions()))
        self._report_unserved_variants(name, config.variants, "config.json variant")

    async def _sync_staged(
        self, name: str, config: ModelConfig, stages: ModelStages, available: list[str], explicit: bool
    ) -> bool:
        """Serve the registry's production version (plus shadow and staging); False when no
        production candidate can be served at all. Candidates, in order: the production version,
        the version serving as production now, the versions that held production before."""
        before = dict(self._roles.get(name, {}))
        production = None
        for version in production_candidates(stages, available, before):
            if await self._ensure_loaded(name, version, config, explicit):
                production = version
                break
        if production is None:
            return False
        split = wanted_split(stages)
        for version in variant_targets(split[1:], available):
            await self._ensure_loaded(name, version, config, explicit)
        # the switch: requests without a version go to the new production and split from here on
        # (both set before the router is rebuilt, so it never pairs the new split with the old role)
        self._splits[name] = split
        self._set_roles(name, {**before, "production": production})
        self._refresh_router(name)
        for _stage, target in side_targets(stages, available):
            await self._ensure_loaded(name, target, config, explicit)
        # loads only add versions, so who serves now decides each side stage's holder
        serving = list(self._served.get(name, {}))
        roles = staged_roles(production, stages, available, before, serving)
        self._set_roles(name, roles)
        for version in staged_unloads(roles, serving, split):
            await self._unload_version(name, version, "no longer holds a registry stage or production variant")
        self._drop_stale_states(name, keep=staged_states(roles, stages))
        self._report_unserved(name, stages, "")
        self._report_unserved_variants(name, split[1:], "production variant")
        return True

    async def _ensure_loaded(self, name: str, version: str, config: ModelConfig, explicit: bool) -> bool:
        """Load ``version`` unless it already serves with this config; True when it serves."""
        current = self._served.get(name, {}).get(version)
        if current is not None and current.config == config and not explicit:
            return True
        version_dir = self.root / name / version
        stamp = _fingerprint(version_dir)
        if not explicit and self._failed.get((name, version)) == stamp:
            return current is not None  # already failed on these very files; wait for them to change
        await self._load_version(name, version, version_dir, config, stamp)
        return version in self._served.get(name, {})

    def _report_unserved(self, name: str, stages: ModelStages, fallback: str) -> None:
        """A state (and log line) for every stage pointing at a version that does not serve."""
        roles = self._roles.get(name, {})
        served = self._served.get(name, {})
        for stage in SERVED_STAGES:
            target = stages.aliases.get(stage)
            if target is None or target in served:
                self._reported.pop((name, stage), None)
                continue
            version_dir = self.root / name / target
            if version_dir.is_dir():
                why = self._errors.get((name, target), "not loaded")
            else:
                why = f"{version_dir} does not exist"
            instead = fallback or (
                f"version {roles[stage]} keeps serving as {stage}" if stage in roles else f"nothing serves as {stage}"
            )
            reason = f"registry stage {stage} points at version {target}, which cannot be served: {why}; {instead}"
            if self._reported.get((name, stage)) != reason:  # once per distinct problem, not every poll
                log.error("model %s: %s", name, reason)
                self._reported[(name, stage)] = reason
            self._set_state(name, target, UNAVAILABLE, reason)

    def _report_unserved_variants(self, name: str, split: Split, what: str) -> None:
        """A state (and log line) for every variant whose version does not serve."""
        served = self._served.get(name, {})
        for variant in split:
            key = (name, f"variant {variant.name}")
            if variant.version in served:
                self._reported.pop(key, None)
                continue
            version_dir = self.root / name / variant.version
            why = self._errors.get((name, variant.version), "not loaded") if version_dir.is_dir() else (
                f"{version_dir} does not exist")
            reason = (f"{what} {variant} points at version {variant.version}, which cannot be served: {why};"
                      " its share goes to the other variants")
            if self._reported.get(key) != reason:
                log.error("model %s: %s", name, reason)
                self._reported[key] = reason
            self._set_state(name, variant.version, UNAVAILABLE, reason)

    def _refresh_router(self, name: str) -> None:
        """Swap in the router of the split as served now (one assignment; nothing is reloaded)."""
        versions = self._served.get(name, {})
        production = self._roles.get(name, {}).get("production")
        split = served_split(self._splits.get(name, ()), production, versions)
        old = self._routers.get(name)
        router = Router([(x, versions[x.version]) for x in split]) if split else None
        if router is not None and router.same_as(old):
            return
        if old is not None:
            for variant, model in old.entries:
                VARIANT_SHARE.labels(name, model.version, variant.name).set(0)
        if router is None:
            self._routers.pop(name, None)
            if old is not None:
                log.info("model %s: no production variants", name)
            return
        for variant, model in router.entries:
            VARIANT_SHARE.labels(name, model.version, variant.name).set(router.share(variant))
        self._routers[name] = router
        if len(router.entries) > 1 or (old is not None and len(old.entries) > 1):
            log.info("model %s: production split %s", name, router.describe())

    def _drop_stale_states(self, name: str, keep: set[str]) -> None:
        loaded = self._served.get(name, {})
        for key in [k for k in self._states if k[0] == name and k[1] not in keep and k[1] not in loaded]:
            del self._states[key]

    def _set_roles(self, name: str, roles: dict[str, str]) -> None:
        """Record who serves as which stage, publish it (/metrics) and re-point the default."""
        old = self._roles.get(name, {})
        if roles == old:
            return
        for stage, version in old.items():
            if roles.get(stage) != version:
                MODEL_STAGE.labels(name, version, stage).set(0)
        for stage, version in roles.items():
            MODEL_STAGE.labels(name, version, stage).set(1)
        if roles:
            self._roles[name] = dict(roles)
        else:
            self._roles.pop(name, None)
        self._refresh_default(name)

    async def _load_version(self, name: str, version: str, version_dir: Path, config: ModelConfig, stamp: float) -> None:
        self._set_state(name, version, LOADING)
        try:
            model = await asyncio.to_thread(ServedModel.load, version_dir, config, self._threads, self._drift)
            if (model.name, model.version) != (name, version):
                raise ModelLoadError(
                    f"{version_dir / MANIFEST_FILE}: says {model.name}/{model.version}, folder is {name}/{version}"
                )
            if model.manifest.task == "binary":
                model.threshold = self._stages.get(name, ModelStages()).thresholds.get(version)
            await model.start()
        except (ModelLoadError, OSError) as exc:
            self._failed[(name, version)] = stamp
            self._errors[(name, version)] = str(exc)
            serving = name in self._served and version in self._served[name]
            reason = str(exc) + ("; still serving the previously loaded files" if serving else "")
            self._set_state(name, version, READY if serving else UNAVAILABLE, reason)
            log.error("model %s version %s failed to load: %s", name, version, exc)
            return
        self._failed.pop((name, version), None)
        self._errors.pop((name, version), None)
        previous = self._served.setdefault(name, {}).get(version)
        self._served[name][version] = model
        self._refresh_default(name)
        self._set_state(name, version, READY)
        log.info("model %s version %s ready (%d features, task %s)", name, version,
                 len(model.manifest.features), model.manifest.task)
        if previous is not None:
            await previous.stop(self._unload_grace)

    async def _unload_version(self, name: str, version: str, reason: str) -> None:
        model = self._served.get(name, {}).pop(version, None)
        self._refresh_default(name)
        if model is None:
            return
        self._set_state(name, version, UNLOADING)
        await model.stop(self._unload_grace)
        self._states.pop((name, version), None)
        log.info("model %s version %s unloaded: %s", name, version, reason)

    async def _unload_all(self, name: str, reason: str) -> None:
        self._splits.pop(name, None)
        self._set_roles(name, {})
        for key in [k for k in self._reported if k[0] == name]:
            del self._reported[key]
        for version in list(self._served.get(name, {})):
            await self._unload_version(name, version, reason)
        self._served.pop(name, None)
        for key in [k for k in self._states if k[0] == name]:
            del self._states[key]
        self._refresh_default(name)

    def _refresh_default(self, name: str) -> None:
        """Requests without a version go to the production version when one serves, else to
        the highest version serving (Triton's rule)."""
        versions = self._served.get(name)
        if versions:
            self._default[name] = versions[default_version(versions, self._roles.get(name, {}))]
        else:
            self._default.pop(name, None)
            self._served.pop(name, None)
        self._refresh_router(name)  # a version loaded, reloaded or gone: the router follows
        self._on_change(name, bool(versions))

    def _set_state(self, name: str, version: str, state: str, reason: str = "") -> None:
        self._states[(name, version)] = VersionState(name, version, state, reason)
