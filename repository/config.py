"""Per-model serving configuration, ``<repo>/<model>/config.json``, in Triton's vocabulary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from onyxserve.repository.store import CONFIG_FILE
from onyxserve.repository.variants import Split, VariantError, make_split

from onyxserve.errors import OnyxserveError


class ConfigError(OnyxserveError, ValueError):
    """A config.json that cannot be used; names the file and the key. A ``ValueError`` too, as it
    always was."""


@dataclass(frozen=True)
class ModelConfig:
    max_batch_size: int = 32  # rows per ONNX run; 0 turns batching off (one request per run)
    max_queue_delay_microseconds: int = 0  # wait this long for a fuller batch; 0 = never wait
    max_queue_size: int = 1024  # requests waiting; beyond this RESOURCE_EXHAUSTED at once
    default_timeout_microseconds: int = 0  # queue deadline when the client sets none; 0 = none
    version_policy: str = "latest"  # latest | all | specific
    num_versions: int = 1  # latest: how many
    versions: tuple[str, ...] = ()  # specific: which
    intra_op_threads: int = 0  # 0 = the server's setting
    inline_max_rows: int = 64  # batches up to this many rows run on the event loop thread
    # production variants when the registry does not decide (``variants.make_split``): requests
    # without a version spread over them by weight. Not compared: a new split is a routing change
    # the server applies without reloading any version (a loaded version keeps its config).
    variants: Split = field(default=(), compare=False)
    drift_window_rows: int = 0  # a drift window closes once it holds this many rows; 0 = the server's
    drift_window_seconds: int = 0  # ... or this many seconds after it opened; 0 = the server's

    @classmethod
    def load(cls, model_dir: Path) -> ModelConfig:
        path = model_dir / CONFIG_FILE
        if not path.exists():
            return cls()
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        if "versions" in data:
            data["versions"] = tuple(str(v) for v in data["versions"])
        if "variants" in data:
            data["variants"] = _variants(data["variants"], path)
        for key in ("max_batch_size", "max_queue_delay_microseconds", "max_queue_size",
                    "default_timeout_microseconds", "num_versions", "intra_op_threads", "inline_max_rows",
                    "drift_window_rows", "drift_window_seconds"):
            value = data.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{path}: '{key}' must be a non-negative integer, got {value!r}")
        config = cls(**data)
        if config.version_policy not in ("latest", "all", "specific"):
            raise ConfigError(f"{path}: 'version_policy' must be latest, all or specific")
        if config.max_queue_size < 1:
            raise ConfigError(f"{path}: 'max_queue_size' must be at least 1")
        return config

    def variant_versions(self) -> list[str]:
        return [v.version for v in self.variants]

    def select_versions(self, available: list[str]) -> list[str]:
        """The versions of ``available`` (numeric order) this policy serves."""
        if self.version_policy == "all":
            return list(available)
        if self.version_policy == "specific":
            return [v for v in available if v in self.versions]
        return available[-max(1, self.num_versions):]


_VARIANT_KEYS = ("version", "weight", "name")


def _variants(value: Any, path: Path) -> Split:
    """``"variants": [{"version": 3, "weight": 90}, {"version": 4, "weight": 10, "name": "canary"}]``."""
    where = f"{path}: 'variants'"
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of {{\"version\", \"weight\"[, \"name\"]}} objects")
    if not value:
        return ()
    entries = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not {"version", "weight"} <= set(item) or set(item) - set(_VARIANT_KEYS):
            raise ConfigError(f"{where}[{i}] must be an object with 'version', 'weight' and optionally 'name',"
                              f" got {item!r}")
        entries.append((item.get("name"), item["version"], item["weight"]))
    try:
        return make_split(entries, where=where)
    except VariantError as exc:
        raise ConfigError(str(exc)) from None
