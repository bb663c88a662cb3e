"""The model repository on disk: ``<repo>/<name>/<version>/{model.onnx, manifest.json}``, and
where each of its files is (the one place those paths are spelled).

Versions are whole numbers. A version is written into a hidden temporary folder, every file
fsynced, then renamed into place, so a reader (the server polling the repository) never sees
half a version, and two writers never get the same number: the rename fails for the loser,
which takes the next number.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
EVALUATION_FILE = "evaluation.json"  # beside the manifest, written by evaluate_version
DB_FILE = "registry.db"


def registry_path(repository: str | Path, override: str | Path | None = None) -> Path:
    """The registry database of ``repository``: ``override`` when given (the server's
    and the registry CLI's ``--registry-db``), else ``<repository>/registry.db``. Every
    reader and writer asks this, so they all open the same file."""
    return Path(override) if override else Path(repository) / DB_FILE


def version_repository(version_dir: str | Path) -> Path:
    """The repository a version folder ``<repository>/<model>/<version>`` belongs to. Resolved
    first, so ``.`` or ``../3`` name the same repository as the full path does."""
    return Path(version_dir).resolve().parent.parent


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_models(repository: str | Path) -> list[str]:
    """Model folder names in the repository (hidden and temporary folders excluded)."""
    root = Path(repository)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_versions(model_dir: str | Path) -> list[str]:
    """Version folder names, in numeric order."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted((p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version(
    repository: str | Path,
    name: str,
    files: Mapping[str, bytes],
    version: str | None = None,
) -> str:
    """Atomically add a version of model ``name``; returns its version string.

    ``files`` maps file names to contents; a callable may not be passed because the manifest
    usually carries its own version, so callers that need it write with ``version`` given.
    """
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for file_name, data in files.items():
            with open(staging / file_name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(staging)
        while True:
            candidate = version or str(int((list_versions(model_dir) or ["0"])[-1]) + 1)
            try:
                os.rename(staging, model_dir / candidate)
                break
            except OSError:
                if version is not None or not (model_dir / candidate).exists():
                    raise
                # another writer took this number first; take the next one
        _fsync_dir(model_dir)
        return candidate
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def next_version(repository: str | Path, name: str) -> str:
    """The number the next write_version of ``name`` would take if nobody else writes first."""
    versions = list_versions(Path(repository) / name)
    return str(int(versions[-1]) + 1) if versions else "1"
