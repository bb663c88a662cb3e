"""The registry: a SQLite index of the model repository's versions, stages and history.

    reg = Registry("models")                       # models/registry.db
    reg.register_version("fraud", "3")             # reads models/fraud/3/manifest.json
    reg.approve("fraud", "3"); reg.promote("fraud", "3", "production")
    reg.rollback("fraud")                          # production back to the one before

The files in the repository stay the truth about what exists (the server reads them, not this);
the index adds what files cannot say: approval, stage aliases (one version per stage per model)
and who did what when. Every change is one SQLite transaction started with ``BEGIN IMMEDIATE``
(the write lock is taken up front, so two writers queue on the busy timeout instead of failing
half-way), in WAL mode with ``synchronous=FULL``: a writer killed mid-transaction leaves the
previous state, and readers never wait for writers. The tables, the stage names and the
history replay are ``schema``'s, shared with the server's read-only ``stages``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onyxserve.core.decision import check_threshold
from onyxserve.repository.manifest import Manifest, ManifestError
from onyxserve.repository.schema import (  # noqa: F401 - STAGES, APPROVALS: also importable from here
    APPROVALS,
    LIVE_STAGES,
    SCHEMA,
    SCHEMA_VERSION,
    STAGES,
    earlier_production,
    production_moves,
)
from onyxserve.repository.store import (  # noqa: F401 - DB_FILE: also importable from here, as before
    DB_FILE,
    EVALUATION_FILE,
    MANIFEST_FILE,
    list_models,
    list_versions,
    registry_path,
)

from onyxserve.errors import OnyxserveError

TRASH_DIR = ".trash"


class RegistryError(OnyxserveError):
    """A refused registry operation; the message names the model, version or stage."""


@dataclass(frozen=True)
class VersionRecord:
    model: str
    version: str
    path: str
    manifest_sha256: str
    model_sha256: str
    task: str
    metrics: dict[str, Any]
    threshold: float | None
    created_at: str
    registered_at: str
    approval: str
    stages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages)}


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    at: str
    actor: str
    action: str
    model: str
    version: str | None
    stage: str | None
    previous: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SyncReport:
    added: tuple[tuple[str, str], ...]
    forgotten: tuple[tuple[str, str], ...]  # indexed versions whose files are gone


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("ONYXSERVE_ACTOR") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def _version_int(version: str | int) -> int:
    text = str(version)
    if not text.isdigit() or int(text) <= 0:
        raise RegistryError(f"version {version!r}: versions are positive whole numbers")
    return int(text)


def read_evaluation(version_dir: Path) -> dict[str, Any]:
    """``evaluation.json`` written by ``evaluate_version``, or {}."""
    path = version_dir / EVALUATION_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path}: unreadable ({exc})") from None


class Registry:
    def __init__(self, repository: str | Path, db_path: str | Path | None = None, *, timeout_s: float = 30.0):
        self.repository = Path(repository)
        self.db_path = registry_path(self.repository, db_path)
        self.timeout_s = timeout_s
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.db_path}: schema version {version} is newer than this onyxserve's"
                )
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=self.timeout_s, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the lock is taken before anything is read, so a decision made on
        what was read still holds at commit; any exception rolls everything back."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN")  # one consistent snapshot for multi-query reads
            yield db
            db.execute("COMMIT")
        finally:
            db.close()

    # -- writing -------------------------------------------------------------------------------

    def register_version(self, name: str, version: str | int, *, actor: str | None = None) -> VersionRecord:
        """Index ``<repository>/<name>/<version>`` from its manifest (and evaluation.json if any).
        Registering the same files again changes nothing; different files under a registered
        number are refused (versions are immutable)."""
        v = _version_int(version)
        row = self._manifest_row(name, v)
        with self._write() as db:
            self._register(db, row, _actor(actor))
        return self.get_version(name, v)

    def _manifest_row(self, name: str, v: int) -> dict[str, Any]:
        vdir = self.repository / name / str(v)
        path = vdir / MANIFEST_FILE
        try:
            raw = path.read_bytes()
            manifest = Manifest.from_json(raw.decode("utf-8"), str(path))
        except FileNotFoundError:
            raise RegistryError(f"{path}: missing; export the version first") from None
        except (ManifestError, UnicodeDecodeError) as exc:
            raise RegistryError(str(exc)) from None
        if manifest.name != name or manifest.version != str(v):
            raise RegistryError(
                f"{path}: the manifest says {manifest.name}/{manifest.version}, the folder {name}/{v}"
            )
        evaluation = read_evaluation(vdir)
        metrics = {**manifest.metrics, **evaluation.get("metrics", {})}
        return {
            "model": name,
            "version": v,
            "path": str(vdir.resolve()),
            "manifest_sha256": hashlib.sha256(raw).hexdigest(),
            "model_sha256": manifest.model.sha256,
            "task": manifest.task,
            "metrics": json.dumps(metrics, sort_keys=True),
            "threshold": evaluation.get("threshold"),
            "created_at": manifest.created_at or _now(),
        }

    def _register(self, db: sqlite3.Connection, row: dict[str, Any], actor: str) -> bool:
        existing = db.execute(
            "SELECT manifest_sha256 FROM versions WHERE model = ? AND version = ?",
            (row["model"], row["version"]),
        ).fetchone()
        if existing is not None:
            if existing["manifest_sha256"] != row["manifest_sha256"]:
                raise RegistryError(
                    f"{row['model']}/{row['version']} is registered with a different manifest"
                    f" (sha256 {existing['manifest_sha256'][:12]}…); versions are immutable"
                )
            return False
        now = _now()
        db.execute("INSERT OR IGNORE INTO models (name, created_at) VALUES (?, ?)", (row["model"], now))
        db.execute(
            "INSERT INTO versions (model, version, path, manifest_sha256, model_sha256, task, metrics, threshold,"
            " created_at, registered_at) VALUES (:model, :version, :path, :manifest_sha256, :model_sha256, :task,"
            " :metrics, :threshold, :created_at, :registered_at)",
            {**row, "registered_at": now},
        )
        _log(db, actor, "register", row["model"], row["version"])
        return True

    def record_evaluation(
        self,
        name: str,
        version: str | int,
        metrics: dict[str, Any],
        threshold: float | None,
        *,
        actor: str | None = None,
    ) -> None:
        """Store evaluation metrics (and the chosen threshold) of a registered version."""
        v = _version_int(version)
        with self._write() as db:
            self._require_version(db, name, v)
            old = json.loads(
                db.execute(
                    "SELECT metrics FROM versions WHERE model = ? AND version = ?", (name, v)
                ).fetchone()["metrics"]
            )
            db.execute(
                "UPDATE versions SET metrics = ?, threshold = ? WHERE model = ? AND version = ?",
                (json.dumps({**old, **metrics}, sort_keys=True), threshold, name, v),
            )
            _log(db, _actor(actor), "evaluate", name, v, detail=f"threshold={threshold}")

    def set_threshold(
        self, name: str, version: str | int, threshold: float | None, *, actor: str | None = None
    ) -> float | None:
        """Set (None: clear) the decision threshold of a binary version; returns the previous one.
        A polling server answers with it within its poll interval: the label is the positive
        class iff its probability is >= the threshold."""
        v = _version_int(version)
        if threshold is not None:
            try:
                threshold = check_threshold(threshold, f"{name}/{v}")
            except ValueError as exc:
                raise RegistryError(str(exc)) from None
        with self._write() as db:
            self._require_version(db, name, v)
            row = db.execute(
                "SELECT task, threshold FROM versions WHERE model = ? AND version = ?", (name, v)
            ).fetchone()
            if row["task"] != "binary" and threshold is not None:
                raise RegistryError(f"{name}/{v} is a {row['task']} model; thresholds apply to binary models")
            db.execute("UPDATE versions SET threshold = ? WHERE model = ? AND version = ?", (threshold, name, v))
            _log(db, _actor(actor), "threshold", name, v, detail=f"{row['threshold']} -> {threshold}")
        return row["threshold"]

    def sync(self, *, actor: str | None = None) -> SyncReport:
        """Index every version on disk that is not indexed yet; forget indexed versions whose
        folder is gone (their stages are dropped; history keeps them)."""
        rows = []
        for name in list_models(self.repository):
            for version in list_versions(self.repository / name):
                if (self.repository / name / version / MANIFEST_FILE).is_file():
                    rows.append(self._manifest_row(name, int(version)))
        added, forgotten = [], []
        who = _actor(actor)
        with self._write() as db:
            for row in rows:
                if self._register(db, row, who):
                    added.append((row["model"], str(row["version"])))
            for r in db.execute("SELECT model, version, path FROM versions").fetchall():
                if not (Path(r["path"]) / MANIFEST_FILE).is_file():
                    self._drop(db, r["model"], r["version"])
                    _log(db, who, "forget", r["model"], r["version"], detail=f"{r['path']} is gone")
                    forgotten.append((r["model"], str(r["version"])))
        return SyncReport(tuple(added), tuple(forgotten))

    def approve(
        self, name: str, version: str | int, *, reject: bool = False, note: str = "", actor: str | None = None
    ) -> None:
        v = _version_int(version)
        status = "rejected" if reject else "approved"
        with self._write() as db:
            self._require_version(db, name, v)
            if reject:
                stages = [
                    r["stage"]
                    for r in db.execute(
                        "SELECT stage FROM aliases WHERE model = ? AND version = ?"
                        f" AND stage IN ({', '.join('?' * len(LIVE_STAGES))})",
                        (name, v, *LIVE_STAGES),
                    )
                ]
                if stages:
                    raise RegistryError(
                        f"{name}/{v} serves as {', '.join(stages)}; promote another version there first"
                    )
            db.execute("UPDATE versions SET approval = ? WHERE model = ? AND version = ?", (status, name, v))
            _log(db, _actor(actor), "reject" if reject else "approve", name, v, detail=note)

    def promote(
        self, name: str, version: str | int, stage: str, *, force: bool = False, actor: str | None = None
    ) -> str | None:
        """Point ``stage`` of ``name`` at ``version``; returns the version it pointed at before.
        Production and shadow take approved versions only (``force`` overrides); a rejected
        version only goes to ``archived``."""
        v = _version_int(version)
        if stage not in STAGES:
            raise RegistryError(f"stage {stage!r}: one of {', '.join(STAGES)}")
        with self._write() as db:
            approval = self._require_version(db, name, v)
            if stage != "archived" and not force:
                if approval == "rejected":
                    raise RegistryError(f"{name}/{v} was rejected; it can only be archived (or use --force)")
                if stage in LIVE_STAGES and approval != "approved":
                    raise RegistryError(
                        f"{name}/{v} is {approval}; approve it before {stage} (or use --force)"
                    )
            previous = self._alias(db, name, stage)
            if previous == v:
                return str(v)
            db.execute(
                "INSERT INTO aliases (model, stage, version, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (model, stage) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                (name, stage, v, _now()),
            )
            _log(
                db,
                _actor(actor),
                "promote",
                name,
                v,
                stage=stage,
                previous=previous,
                detail="forced" if force else "",
            )
        return None if previous is None else str(previous)

    def clear_stage(self, name: str, stage: str, *, force: bool = False, actor: str | None = None) -> str | None:
        """Point ``stage`` of ``name`` at no version (e.g. end a shadow comparison); returns the
        version it pointed at. Clearing production needs ``force``: a polling server then serves
        the model by its config.json version_policy."""
        if stage not in STAGES:
            raise RegistryError(f"stage {stage!r}: one of {', '.join(STAGES)}")
        if stage == "production" and not force:
            raise RegistryError(
                f"clearing production changes what {name} serves (config.json's version_policy instead);"
                " use --force, or promote or roll back another version"
            )
        with self._write() as db:
            if db.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is None:
                raise RegistryError(f"model {name!r} is not registered")
            previous = self._alias(db, name, stage)
            if previous is None:
                return None
            db.execute("DELETE FROM aliases WHERE model = ? AND stage = ?", (name, stage))
            _log(db, _actor(actor), "clear", name, previous, stage=stage, previous=previous)
        return str(previous)

    def rollback(self, name: str, *, actor: str | None = None) -> tuple[str, str]:
        """Move production back to the version that held it before the current one (skipping
        versions deleted since); returns (from, to). Repeated rollbacks walk further back."""
        with self._write() as db:
            current = self._alias(db, name, "production")
            if current is None:
                raise RegistryError(f"{name} has no production version to roll back")
            moves = production_moves(db, name).get(name, [])
            existing = {
                str(r["version"]) for r in db.execute("SELECT version FROM versions WHERE model = ?", (name,))
            }
            target = next((ver for ver in earlier_production(moves, current) if ver in existing), None)
            if target is None:
                raise RegistryError(
                    f"{name}: no earlier production version to roll back to (production is {current})"
                )
            db.execute(
                "UPDATE aliases SET version = ?, updated_at = ? WHERE model = ? AND stage = 'production'",
                (int(target), _now(), name),
            )
            _log(db, _actor(actor), "rollback", name, int(target), stage="production", previous=current)
        return str(current), str(target)

    def delete(self, name: str, version: str | int, *, force: bool = False, actor: str | None = None) -> None:
        """Remove a version's files and its index entry. The production version is refused unless
        ``force``. The folder is first renamed into ``<repository>/.trash`` (atomic: the server
        sees the whole version or none), the index committed, then the trash removed; if the
        commit fails the folder is renamed back."""
        v = _version_int(version)
        vdir = self.repository / name / str(v)
        trash = self.repository / TRASH_DIR / f"{name}-{v}-{uuid.uuid4().hex[:8]}"
        with self._write() as db:
            self._require_version(db, name, v)
            stages = [
                r["stage"]
                for r in db.execute("SELECT stage FROM aliases WHERE model = ? AND version = ?", (name, v))
            ]
            if "production" in stages and not force:
                raise RegistryError(
                    f"{name}/{v} is the production version; promote another first (or use --force)"
                )
            moved = False
            if vdir.exists():
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.rename(vdir, trash)
                moved = True
            try:
                self._drop(db, name, v)
                _log(
                    db,
                    _actor(actor),
                    "delete",
                    name,
                    v,
                    detail=",".join(stages) + (" forced" if force else ""),
                )
            except BaseException:
                if moved:
                    os.rename(trash, vdir)
                raise
        # committed: the files can go (a crash here leaves only the trash folder behind)
        shutil.rmtree(trash, ignore_errors=True)

    def _drop(self, db: sqlite3.Connection, name: str, v: int) -> None:
        db.execute("DELETE FROM aliases WHERE model = ? AND version = ?", (name, v))
        db.execute("DELETE FROM versions WHERE model = ? AND version = ?", (name, v))

    def _require_version(self, db: sqlite3.Connection, name: str, v: int) -> str:
        row = db.execute(
            "SELECT approval FROM versions WHERE model = ? AND version = ?", (name, v)
        ).fetchone()
        if row is None:
            known = db.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone()
            raise RegistryError(
                f"{name}/{v} is not registered" if known else f"model {name!r} is not registered"
            )
        return row["approval"]

    @staticmethod
    def _alias(db: sqlite3.Connection, name: str, stage: str) -> int | None:
        row = db.execute(
            "SELECT version FROM aliases WHERE model = ? AND stage = ?", (name, stage)
        ).fetchone()
        return None if row is None else row["version"]

    # -- reading -------------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        with self._read() as db:
            out = []
            for m in db.execute("SELECT name, created_at FROM models ORDER BY name").fetchall():
                versions = [
                    r["version"]
                    for r in db.execute(
                        "SELECT version FROM versions WHERE model = ? ORDER BY version", (m["name"],)
                    )
                ]
                stages = {
                    r["stage"]: str(r["version"])
                    for r in db.execute(
                        "SELECT stage, version FROM aliases WHERE model = ? ORDER BY stage", (m["name"],)
                    )
                }
                out.append(
                    {
                        "name": m["name"],
                        "versions": len(versions),
                        "latest": str(versions[-1]) if versions else None,
                        "stages": stages,
                    }
                )
            return out

    def list_versions(self, name: str) -> list[VersionRecord]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM versions WHERE model = ? ORDER BY version", (name,)).fetchall()
            return [self._record(db, r) for r in rows]

    def get_version(self, name: str, version: str | int) -> VersionRecord:
        v = _version_int(version)
        with self._read() as db:
            row = db.execute("SELECT * FROM versions WHERE model = ? AND version = ?", (name, v)).fetchone()
            if row is None:
                self._require_version(db, name, v)
            return self._record(db, row)

    def aliases(self, name: str) -> dict[str, str]:
        with self._read() as db:
            return {
                r["stage"]: str(r["version"])
                for r in db.execute("SELECT stage, version FROM aliases WHERE model = ?", (name,))
            }

    def history(self, name: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        with self._read() as db:
            where, args = ("WHERE model = ?", (name,)) if name else ("", ())
            rows = db.execute(
                f"SELECT * FROM history {where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [
            HistoryEntry(
                id=r["id"],
                at=r["at"],
                actor=r["actor"],
                action=r["action"],
                model=r["model"],
                version=_s(r["version"]),
                stage=r["stage"],
                previous=_s(r["previous"]),
                detail=r["detail"],
            )
            for r in rows
        ]

    def compare(self, name: str, versions: Sequence[str | int]) -> dict[str, Any]:
        """Versions side by side: every metric any of them has (missing: None), approval, stages."""
        records = [self.get_version(name, v) for v in versions]
        keys = sorted({k for r in records for k, val in r.metrics.items() if isinstance(val, (int, float))})
        return {
            "model": name,
            "versions": [r.version for r in records],
            "metrics": {k: [r.metrics.get(k) for r in records] for k in keys},
            "threshold": [r.threshold for r in records],
            "approval": [r.approval for r in records],
            "stages": [list(r.stages) for r in records],
            "created_at": [r.created_at for r in records],
        }

    def _record(self, db: sqlite3.Connection, r: sqlite3.Row) -> VersionRecord:
        stages = tuple(
            s["stage"]
            for s in db.execute(
                "SELECT stage FROM aliases WHERE model = ? AND version = ? ORDER BY stage",
                (r["model"], r["version"]),
            )
        )
        return VersionRecord(
            model=r["model"],
            version=str(r["version"]),
            path=r["path"],
            manifest_sha256=r["manifest_sha256"],
            model_sha256=r["model_sha256"],
            task=r["task"],
            metrics=json.loads(r["metrics"]),
            threshold=r["threshold"],
            created_at=r["created_at"],
            registered_at=r["registered_at"],
            approval=r["approval"],
            stages=stages,
        )

    def check(self) -> str:
        """SQLite's integrity check ("ok" when the file is sound)."""
        with self._read() as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0]


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _log(
    db: sqlite3.Connection,
    actor: str,
    action: str,
    model: str,
    version: int | None,
    *,
    stage: str | None = None,
    previous: int | None = None,
    detail: str = "",
) -> None:
    db.execute(
        "INSERT INTO history (at, actor, action, model, version, stage, previous, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_now(), actor, action, model, version, stage, previous, detail),
    )


def register_version(
    repository: str | Path,
    name: str,
    version: str | int,
    *,
    actor: str | None = None,
    db: str | Path | None = None,
) -> VersionRecord:
    """Index an exported version in the repository's registry (``registry_path``)."""
    return Registry(repository, db).register_version(name, version, actor=actor)
