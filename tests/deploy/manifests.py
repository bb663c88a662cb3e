"""Load the deploy/ files and read the onyxserve settings out of them, for the deploy tests."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from onyxserve.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = [KUBERNETES / "sidecar.yaml", *sorted((KUBERNETES / "standalone").glob("*.yaml"))]


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in MANIFESTS for doc in documents(path)]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(pod_spec: dict, name: str) -> dict:
    for c in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def serve_args(argv: list[str]):
    """`onyxserve serve ...` parsed by the real CLI parser: an unknown flag fails here."""
    assert argv[0] == "serve", argv
    args = build_parser().parse_args(argv)
    assert args.command == "serve"
    return args


def container_serve_args(c: dict):
    assert c["command"] == ["onyxserve"], c["command"]
    return serve_args(c["args"])


def env_value(c: dict, name: str) -> dict:
    for e in c.get("env", []):
        if e["name"] == name:
            return e
    raise AssertionError(f"{c['name']} has no env {name}")


def unit_file(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as {section: [(key, value), ...]}: keys repeat, backslash continues a line."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_value(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert values, f"no {key}="
    return values[-1]


def exec_argv(value: str) -> list[str]:
    return shlex.split(value.lstrip("-@:+!"))
