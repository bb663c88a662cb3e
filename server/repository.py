"""The served side of the model repository: which versions are loaded, and why not.

Loading (reading files, checking the sha256, building the ORT session) runs in a thread, so
the server keeps answering while a model loads. A version that fails to load is reported with
its reason (RepositoryIndex, the log) and the versions already serving keep serving: a broken
new version never takes an old one down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onyxserve.core.model_store import MANIFEST_FILE, list_models, list_versions
from onyxserve.core.scorer import ModelLoadError
from onyxserve.server.errors import ModelNotFound, ModelNotReady, RepositoryError
from onyxserve.server.model_config import ConfigError, ModelConfig
from onyxserve.server.served_model import ServedModel

log = logging.getLogger(__name__)

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


@dataclass
class VersionState:
    name: str
    version: str
    state: str
    reason: str = ""


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
    ) -> None:
        self.root = Path(root)
        self._threads = intra_op_threads
        self._unload_grace = unload_grace_s
        self._on_change = on_change or (lambda name, serving: None)
        self._served: dict[str, dict[str, ServedModel]] = {}  # name -> version -> model
        self._default: dict[str, ServedModel] = {}  # name -> highest ready version
        self._states: dict[tuple[str, str], VersionState] = {}
        self._failed: dict[tuple[str, str], float] = {}  # failed load -> fingerprint it failed at
        self._lock = asyncio.Lock()

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

    def ready_models(self) -> list[ServedModel]:
        return [m for versions in self._served.values() for m in versions.values()]

    def versions(self, name: str) -> list[str]:
        return sorted(self._served.get(name, {}), key=int)

    def index(self) -> list[VersionState]:
        """Every model folder and version known, loaded or not, for RepositoryIndex."""
        seen = {(s.name, s.version) for s in self._states.values()}
        extra = [
            VersionState(name, "", UNAVAILABLE, "not loaded")
            for name in list_models(self.root)
            if not any(n == name for n, _ in seen)
        ]
        return sorted([*self._states.values(), *extra], key=lambda s: (s.name, s.version))

    # ---- changes ----

    async def scan(self) -> None:
        """Bring every model folder in line with the disk (poll mode and start-up)."""
        async with self._lock:
            names = set(list_models(self.root))
            for name in sorted(names):
                await self._sync_model(name, explicit=False)
            for name in sorted(set(self._served) - names):
                await self._unload_all(name, "model folder removed")

    async def load(self, name: str) -> None:
        """Explicit load (or reload) of one model; raises RepositoryError when nothing serves."""
        async with self._lock:
            if not (self.root / name).is_dir():
                raise RepositoryError(f"model '{name}' is not in repository {self.root}")
            await self._sync_model(name, explicit=True)
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
            await asyncio.gather(*(m.stop(grace_s) for m in self.ready_models()))
            self._served.clear()
            self._default.clear()

    async def _sync_model(self, name: str, *, explicit: bool) -> None:
        model_dir = self.root / name
        try:
            config = ModelConfig.load(model_dir)
        except ConfigError as exc:
            self._set_state(name, "", UNAVAILABLE, str(exc))
            log.error("%s", exc)
            return
        self._states.pop((name, ""), None)
        wanted = config.select_versions(list_versions(model_dir))
        if not wanted:
            self._set_state(name, "", UNAVAILABLE, f"no version folders in {model_dir}")
            return
        loaded = self._served.get(name, {})
        for version in wanted:
            version_dir = model_dir / version
            stamp = _fingerprint(version_dir)
            current = loaded.get(version)
            if current is not None and current.config == config and not explicit:
                continue
            if not explicit and self._failed.get((name, version)) == stamp:
                continue  # already failed on these very files; wait for them to change
            await self._load_version(name, version, version_dir, config, stamp)
        loaded = self._served.get(name, {})
        if any(v in loaded for v in wanted):
            # only drop versions outside the policy once a wanted one is serving
            for version in [v for v in loaded if v not in wanted]:
                await self._unload_version(name, version, "not selected by the version policy")
        for key in [k for k in self._states if k[0] == name and k[1] not in wanted and k[1] not in loaded]:
            del self._states[key]

    async def _load_version(self, name: str, version: str, version_dir: Path, config: ModelConfig, stamp: float) -> None:
        self._set_state(name, version, LOADING)
        try:
            model = await asyncio.to_thread(ServedModel.load, version_dir, config, self._threads)
            if (model.name, model.version) != (name, version):
                raise ModelLoadError(
                    f"{version_dir / MANIFEST_FILE}: says {model.name}/{model.version}, folder is {name}/{version}"
                )
            await model.start()
        except (ModelLoadError, OSError) as exc:
            self._failed[(name, version)] = stamp
            serving = name in self._served and version in self._served[name]
            reason = str(exc) + ("; still serving the previously loaded files" if serving else "")
            self._set_state(name, version, READY if serving else UNAVAILABLE, reason)
            log.error("model %s version %s failed to load: %s", name, version, exc)
            return
        self._failed.pop((name, version), None)
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
        for version in list(self._served.get(name, {})):
            await self._unload_version(name, version, reason)
        self._served.pop(name, None)
        for key in [k for k in self._states if k[0] == name]:
            del self._states[key]
        self._refresh_default(name)

    def _refresh_default(self, name: str) -> None:
        versions = self._served.get(name)
        if versions:
            self._default[name] = versions[max(versions, key=int)]
        else:
            self._default.pop(name, None)
            self._served.pop(name, None)
        self._on_change(name, bool(versions))

    def _set_state(self, name: str, version: str, state: str, reason: str = "") -> None:
        self._states[(name, version)] = VersionState(name, version, state, reason)
