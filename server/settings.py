"""Server settings: one typed object, from defaults < config file < ONYXSERVE_* env < CLI flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomllib
from onyxserve.repository.store import registry_path
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONYXSERVE_", extra="forbid")

    repository: Path = Field(Path("models"), description="Model repository folder.")
    host: str = Field("127.0.0.1", description="Address the gRPC and HTTP listeners bind.")
    grpc_port: int = Field(8001, description="gRPC port (0 picks a free one; single worker only).")
    http_port: int = Field(8000, description="HTTP port for health, REST inference and /metrics; -1 disables.")
    uds: Path | None = Field(None, description="Also serve gRPC on this unix socket path.")
    workers: int = Field(1, ge=1, description="Serving processes sharing the ports (SO_REUSEPORT).")
    model_control: str = Field(
        "poll", pattern="^(poll|explicit|none)$",
        description="poll: rescan the repository; explicit: load/unload only by API; none: load once.",
    )
    poll_interval_s: float = Field(5.0, gt=0, description="Seconds between repository scans in poll mode.")
    version_source: str = Field(
        "registry", pattern="^(registry|config)$",
        description="registry: a model with a production stage in registry.db serves it (plus shadow"
        " and staging); config: config.json's version_policy only. Without registry.db both are config.",
    )
    registry_db: Path | None = Field(
        None, description="Registry database read for stages (default <repository>/registry.db); read-only."
    )
    load_models: list[str] = Field(
        default_factory=list, description="explicit mode: models loaded at start (empty loads all)."
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest gRPC message accepted; larger is RESOURCE_EXHAUSTED."
    )
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per model; 0 = CPU quota / workers.")
    shutdown_grace_s: float = Field(10.0, ge=0, description="In-flight requests get this long to finish on SIGTERM.")
    shutdown_delay_s: float = Field(
        0.0, ge=0, description="On SIGTERM, report NOT_SERVING this long before refusing requests."
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: serve gRPC and HTTP over TLS.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        None, description="PEM CA bundle: require client certificates signed by it (mutual TLS)."
    )
    shadow_max_in_flight: int = Field(
        64, ge=1, description="Mirrored requests a model's shadow version may have waiting; more are dropped"
        " and counted (onyxserve_shadow_requests_total{outcome=\"dropped\"}), never queued.",
    )
    shadow_gather_ms: float = Field(
        2.0, ge=0, description="A model's shadow worker gathers mirrored requests this long before one shadow"
        " batch: fewer, larger shadow batches cost less CPU; adds to the shadow's latency only.",
    )
    metrics: bool = Field(True, description="Export Prometheus metrics on /metrics.")
    log_level: str = Field("INFO", description="Python logging level.")
    drift: bool = Field(True, description="Count live feature and prediction distributions against the baseline.")
    drift_alpha: float = Field(
        0.05, gt=0, lt=1, description="A series is drifted when its Benjamini-Hochberg adjusted p-value (KS or"
        " chi-square, across the version's series) is at most this.",
    )
    drift_psi_threshold: float = Field(0.2, gt=0, description="Secondary: a series with a larger PSI is marked so.")
    drift_min_rows: int = Field(
        1, ge=1, description="A floor on the rows a series needs to be flagged, above each test's own minimum.")
    drift_window_s: float = Field(
        900.0, ge=0, description="A tumbling drift window closes this many seconds after it opened (0: no time"
        " limit); config.json's drift_window_seconds sets it per model.")
    drift_window_rows: int = Field(
        0, ge=0, description="... or once it holds this many rows (0: no row limit); config.json's"
        " drift_window_rows sets it per model.")
    drift_snapshot_s: float = Field(1.0, gt=0, description="Seconds between the checks that close drift windows.")

    def registry_path(self) -> Path:
        """The registry database the server reads stages from (the rule every part follows)."""
        return registry_path(self.repository, self.registry_db)

    def bind_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        if self.drift_window_s and self.drift_snapshot_s > self.drift_window_s:
            raise ValueError("drift_snapshot_s must not exceed drift_window_s")
        return self


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML or JSON file of Settings fields (dashes or underscores)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return {k.replace("-", "_"): v for k, v in data.items()}


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Defaults, then the config file, then ONYXSERVE_* environment, then explicit overrides."""
    from_env = Settings()
    values = read_config_file(config_file) if config_file else {}
    values.update({name: getattr(from_env, name) for name in from_env.model_fields_set})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
