"""deploy/systemd: the unit parses (systemd-analyze verify where installed, and our own reader),
its ExecStart is accepted by the real `onyxserve serve` parser, its stop timeout covers the drain,
and the env file's variables are real settings."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from onyxserve.server.settings import load_settings

from tests.deploy.manifests import DEPLOY, exec_argv, serve_args, unit_file, unit_value

UNIT = DEPLOY / "systemd" / "onyxserve.service"
ENV_FILE = DEPLOY / "systemd" / "onyxserve.env"
SERVICE = unit_file(UNIT)["Service"]


def test_sections():
    assert set(unit_file(UNIT)) == {"Unit", "Service", "Install"}
    assert unit_value(unit_file(UNIT)["Install"], "WantedBy") == "multi-user.target"


def test_exec_start_is_a_valid_serve_command():
    argv = exec_argv(unit_value(SERVICE, "ExecStart"))
    assert argv[0].endswith("/onyxserve")
    args = serve_args(argv[1:])
    assert str(args.repository) in unit_value(SERVICE, "ReadOnlyPaths").split()
    assert args.uds is not None and str(args.uds.parent) == "/run/" + unit_value(SERVICE, "RuntimeDirectory")


def test_stop_covers_the_drain():
    args = serve_args(exec_argv(unit_value(SERVICE, "ExecStart"))[1:])
    assert unit_value(SERVICE, "KillSignal") == "SIGTERM"
    assert unit_value(SERVICE, "KillMode") == "mixed"  # SIGTERM to the parent only; it stops its workers
    assert args.shutdown_delay_s + args.shutdown_grace_s < float(unit_value(SERVICE, "TimeoutStopSec"))


def test_restart_and_hardening():
    assert unit_value(SERVICE, "Type") == "simple"
    assert unit_value(SERVICE, "Restart") == "on-failure"
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit_value(SERVICE, key) == value, key


def test_env_file_names_real_settings(monkeypatch):
    names = []
    for line in ENV_FILE.read_text().splitlines():
        line = line.lstrip("#").strip()
        if line.startswith("ONYXSERVE_") and "=" in line:
            name, _, value = line.partition("=")
            names.append(name)
            monkeypatch.setenv(name, value)
    for name in ("ONYXSERVE_TLS_CERT", "ONYXSERVE_TLS_KEY"):  # a pair: only checked by name here
        monkeypatch.delenv(name, raising=False)
    assert "ONYXSERVE_INTRA_OP_THREADS" in names
    settings = load_settings()  # the values parse and validate...
    assert settings.intra_op_threads == 0 and settings.model_control == "poll"
    # ...and every name is a field (the environment source ignores unknown names), examples included
    assert set(names) <= {f"ONYXSERVE_{f.upper()}" for f in type(settings).model_fields}


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian: systemd)"
)
def test_systemd_analyze_verify(tmp_path):
    # verify wants ExecStart's binary to exist: point it at the onyxserve installed here
    onyxserve = shutil.which("onyxserve")
    assert onyxserve, "the onyxserve console script is not on PATH"
    unit = tmp_path / "onyxserve.service"
    unit.write_text(UNIT.read_text().replace("/opt/onyxserve/bin/onyxserve", onyxserve))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr
