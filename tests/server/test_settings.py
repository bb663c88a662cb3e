"""Settings precedence: defaults < config file < ONYXSERVE_* environment < explicit flags."""

from __future__ import annotations

import pytest
from onyxserve.server.settings import load_settings
from pydantic import ValidationError


def test_file_env_and_flags_in_order(tmp_path, monkeypatch):
    config = tmp_path / "settings.toml"
    config.write_text('grpc-port = 9001\nhttp_port = 9000\nworkers = 2\nrepository = "/srv/models"\n')
    monkeypatch.setenv("ONYXSERVE_HTTP_PORT", "9100")
    monkeypatch.setenv("ONYXSERVE_MAX_MESSAGE_BYTES", "1024")
    s = load_settings(config, workers=3)
    assert s.grpc_port == 9001  # file
    assert s.http_port == 9100  # env beats file
    assert s.workers == 3  # flag beats file
    assert s.max_message_bytes == 1024
    assert str(s.repository) == "/srv/models"
    assert s.shutdown_grace_s == 10.0  # default


def test_json_config_and_bad_values_name_the_field(tmp_path, monkeypatch):
    config = tmp_path / "settings.json"
    config.write_text('{"model_control": "explicit", "load_models": ["fraud"]}')
    s = load_settings(config)
    assert s.model_control == "explicit" and s.load_models == ["fraud"]
    monkeypatch.setenv("ONYXSERVE_WORKERS", "0")
    with pytest.raises(ValidationError, match="workers"):
        load_settings()
    monkeypatch.delenv("ONYXSERVE_WORKERS")
    config.write_text('{"grpc_prot": 1}')
    with pytest.raises(ValidationError, match="grpc_prot"):
        load_settings(config)


def test_version_source_file_env_flag(tmp_path, monkeypatch):
    config = tmp_path / "settings.toml"
    config.write_text('version-source = "config"\nrepository = "/srv/models"\n')
    s = load_settings(config)
    assert s.version_source == "config"
    assert str(s.registry_path()) == "/srv/models/registry.db"  # default: beside the models
    monkeypatch.setenv("ONYXSERVE_VERSION_SOURCE", "registry")
    assert load_settings(config).version_source == "registry"  # env beats file
    assert load_settings(config, version_source="config").version_source == "config"  # flag beats env
    assert load_settings(registry_db="/var/reg.db").registry_path().as_posix() == "/var/reg.db"
    with pytest.raises(ValidationError, match="version_source"):
        load_settings(version_source="stages")
