"""The registry: a SQLite index of the model repository's versions, stages and history.

    reg = Registry("models")                       # models/registry.db
    reg.register_version("fraud", "3")             # reads models/fraud/3/manifest.json
    reg.approve("fraud", "3"); reg.promote("fraud", "3", "production")
    reg.canary("fraud", "4", 10)                   # 10% of production traffic to v4, 90% to v3
    reg.rollback("fraud")                          # production (and its split) back to the one before

The files in the repository stay the truth about what exists (the server reads them, not this);
the index adds what files cannot say: approval, stage aliases (one version per stage per model)
and who did what when, and how production traffic is split between versions (``variants``).
Every change is one SQLite transaction started with ``BEGIN IMMEDIATE``
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
    earlier_states,
    production_moves,
    upgrade,
)
from onyxserve.repository.store import (  # noqa: F401 - DB_FILE: also importable from here, as before
    DB_FILE,
    EVALUATION_FILE,
    MANIFEST_FILE,
    list_models,
    list_versions,
    registry_path,
)
from onyxserve.repository.variants import (
    Split,
    Variant,
    VariantError,
    describe,
    from_json,
    is_solo,
    make_split,
    solo,
    to_json,
    with_canary,
    without,
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
    split: str | None = None  # production moves: the split they left (variants.to_json), None = alone

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
            upgrade(db)
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
                    self._drop(db, r["model"], r["version"], who)
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
                variant = self._variant_of(db, name, v)
                if variant is not None:
                    raise RegistryError(
                        f"{name}/{v} serves as production variant {variant}; set a split without it first"
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
            self._check_stage(db, name, v, stage, force)
            previous = self._alias(db, name, stage)
            if stage == "production":  # all production traffic to v: a split, if any, ends
                if self._current_split(db, name) != solo(v):
                    self._move_production(
                        db, name, solo(v), action="promote", actor=_actor(actor), detail="forced" if force else ""
                    )
                return None if previous is None else str(previous)
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

    def _check_stage(self, db: sqlite3.Connection, name: str, v: int, stage: str, force: bool) -> None:
        """Refuses ``name``/``v`` for ``stage`` unless registered and, for live traffic, approved."""
        approval = self._require_version(db, name, v)
        if stage != "archived" and not force:
            if approval == "rejected":
                raise RegistryError(f"{name}/{v} was rejected; it can only be archived (or use --force)")
            if stage in LIVE_STAGES and approval != "approved":
                raise RegistryError(f"{name}/{v} is {approval}; approve it before {stage} (or use --force)")

    # -- production variants -------------------------------------------------------------------

    def split(self, name: str) -> Split:
        """How production traffic is shared now: the production version alone (``solo``), a
        split of several, or () when the model has no production version."""
        with self._read() as db:
            return self._current_split(db, name)

    def set_split(
        self,
        name: str,
        entries: Sequence[tuple[str | None, str | int, float]],
        *,
        force: bool = False,
        actor: str | None = None,
    ) -> tuple[Split, Split]:
        """Share production traffic between versions by weight: (name or None, version, weight)
        entries (``variants.make_split``). The production version stays primary when it is in the
        split, else the heaviest variant becomes production. Every version must be approved
        (``force`` overrides, as for promote). Returns (before, after)."""
        with self._write() as db:
            before = self._current_split(db, name)
            current = before[0].version if before else None
            try:
                split = make_split(entries, primary=current, where=f"{name} variants")
            except VariantError as exc:
                raise RegistryError(str(exc)) from None
            for variant in split:
                self._check_stage(db, name, int(variant.version), "production", force)
            if split != before:
                detail = describe(split) + (" forced" if force else "")
                self._move_production(db, name, split, action="split", actor=_actor(actor), detail=detail)
        return before, split

    def canary(
        self,
        name: str,
        version: str | int,
        percent: float,
        *,
        variant: str | None = None,
        force: bool = False,
        actor: str | None = None,
    ) -> tuple[Split, Split]:
        """One canary step: ``version`` takes ``percent`` of production traffic, the other
        variants share the rest as they did (the production version stays primary). 100 is a
        plain promotion to production. Returns (before, after)."""
        v = _version_int(version)
        if percent == 100:
            before = self.split(name)
            self.promote(name, v, "production", force=force, actor=actor)
            return before, solo(v)
        with self._write() as db:
            before = self._current_split(db, name)
            if not before:
                raise RegistryError(
                    f"{name} has no production version for a canary to share with; promote one first"
                )
            self._check_stage(db, name, v, "production", force)
            try:
                split = with_canary(before, v, percent, variant)
            except VariantError as exc:
                raise RegistryError(f"{name}: {exc}") from None
            if split != before:
                detail = f"canary {v} at {percent:g}%: {describe(split)}" + (" forced" if force else "")
                self._move_production(db, name, split, action="split", actor=_actor(actor), detail=detail)
        return before, split

    def _current_split(self, db: sqlite3.Connection, name: str) -> Split:
        production = self._alias(db, name, "production")
        if production is None:
            return ()
        rows = db.execute("SELECT name, version, weight FROM variants WHERE model = ?", (name,)).fetchall()
        if not rows:
            return solo(production)
        # primary first, the others in version order: the one spelling (variants.make_split)
        rows = sorted(rows, key=lambda r: (r["version"] != production, r["version"]))
        return tuple(Variant(r["name"], str(r["version"]), float(r["weight"])) for r in rows)

    def _variant_of(self, db: sqlite3.Connection, name: str, v: int) -> str | None:
        """``Variant`` text of ``v`` when it shares production traffic beside the production version."""
        split = self._current_split(db, name)
        return next((str(x) for x in split[1:] if x.version == str(v)), None)

    def _store_split(self, db: sqlite3.Connection, name: str, split: Split) -> None:
        db.execute("DELETE FROM variants WHERE model = ?", (name,))
        if split and not is_solo(split):
            now = _now()
            db.executemany(
                "INSERT INTO variants (model, name, version, weight, updated_at) VALUES (?, ?, ?, ?, ?)",
                [(name, x.name, int(x.version), x.weight, now) for x in split],
            )

    def _move_production(
        self, db: sqlite3.Connection, name: str, split: Split, *, action: str, actor: str, detail: str = ""
    ) -> None:
        """Production becomes ``split`` (its primary the production alias), recorded in history
        as one move the replay (``schema.earlier_states``) can come back to."""
        previous = self._alias(db, name, "production")
        primary = int(split[0].version)
        db.execute(
            "INSERT INTO aliases (model, stage, version, updated_at) VALUES (?, 'production', ?, ?)"
            " ON CONFLICT (model, stage) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (name, primary, _now()),
        )
        self._store_split(db, name, split)
        _log(db, actor, action, name, primary, stage="production", previous=previous, detail=detail,
             split=to_json(split))

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
            if stage == "production":  # the split shares production: it goes with it
                db.execute("DELETE FROM variants WHERE model = ?", (name,))
            _log(db, _actor(actor), "clear", name, previous, stage=stage, previous=previous)
        return str(previous)

    def rollback(self, name: str, *, actor: str | None = None) -> tuple[str, str]:
        """Move production back to the state before the current one -- the version that held it,
        and the split it had (a canary step undone restores the weights before it) -- skipping
        states naming versions deleted since; returns (from, to) production versions (``split``
        says the weights). Repeated rollbacks walk further back."""
        with self._write() as db:
            current = self._alias(db, name, "production")
            if current is None:
                raise RegistryError(f"{name} has no production version to roll back")
            moves = production_moves(db, name).get(name, [])
            existing = {
                str(r["version"]) for r in db.execute("SELECT version FROM versions WHERE model = ?", (name,))
            }
            state = (str(current), to_json(self._current_split(db, name)))
            earlier = (from_json(text, v) for v, text in earlier_states(moves, state))
            target = next((split for split in earlier if {x.version for x in split} <= existing), None)
            if target is None:
                raise RegistryError(
                    f"{name}: no earlier production version to roll back to (production is {current})"
                )
            self._move_production(
                db, name, target, action="rollback", actor=_actor(actor), detail="" if is_solo(target) else describe(target)
            )
        return str(current), target[0].version

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
            variant = self._variant_of(db, name, v)
            if variant is not None and not force:
                raise RegistryError(
                    f"{name}/{v} serves as production variant {variant}; set a split without it first"
                    " (or use --force: its share goes to the other variants)"
                )
            if variant is not None:
                stages.append("variant")
            moved = False
            if vdir.exists():
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.rename(vdir, trash)
                moved = True
            try:
                self._drop(db, name, v, _actor(actor))
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

    def _drop(self, db: sqlite3.Connection, name: str, v: int, actor: str) -> None:
        split = self._current_split(db, name)
        if split and split[0].version == str(v):  # the production version goes: its split with it
            db.execute("DELETE FROM variants WHERE model = ?", (name,))
        elif any(x.version == str(v) for x in split):  # a variant goes: its share to the others
            rest = without(split, v) or solo(split[0].version)
            self._move_production(db, name, rest, action="split", actor=actor, detail=f"without version {v}: {describe(rest)}")
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
                split=r["split"],
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
    split: str | None = None,
) -> None:
    db.execute(
        "INSERT INTO history (at, actor, action, model, version, stage, previous, detail, split)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (_now(), actor, action, model, version, stage, previous, detail, split),
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
