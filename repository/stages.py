"""The server's read-only view of the registry's stages (``<repository>/registry.db``).

The registry (``onyxserve.repository.registry``) owns the database; the server only reads it:
the connection is opened with ``mode=ro`` and ``query_only`` (it cannot write even by mistake),
each read is one short snapshot transaction, and the connection is closed at once, so the
registry CLI's writers never wait on the server (WAL: readers do not block writers, and no
long-lived read snapshot holds back checkpoints).

Which versions a stage-controlled model serves is decided by the server
(``server/models/selection.py``); this module only answers "which version holds which stage, and
which versions held production before" (``schema.earlier_production``, the replay
``Registry.rollback`` follows too), how production traffic is split between versions
(``variants``), and each version's decision threshold. The tables and the
stage names are ``schema``'s; the connection handling is this module's own.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from onyxserve.repository.schema import SERVED_STAGES, earlier_production, has_table, production_moves
from onyxserve.repository.variants import Split, Variant

from onyxserve.errors import OnyxserveError

VERSION_SOURCES = ("registry", "config")


class StageReadError(OnyxserveError):
    """The registry database exists but cannot be read; names the file."""


@dataclass(frozen=True)
class ModelStages:
    """One model's stage aliases, as version strings."""

    aliases: dict[str, str] = field(default_factory=dict)  # stage -> version
    earlier_production: tuple[str, ...] = ()  # versions that held production before, newest first
    thresholds: dict[str, float] = field(default_factory=dict)  # version -> binary decision threshold
    # production traffic shared by weight, primary (= production) first; () = production alone
    variants: Split = ()

    @property
    def production(self) -> str | None:
        return self.aliases.get("production")

    def stages_of(self, version: str) -> tuple[str, ...]:
        return tuple(s for s in SERVED_STAGES if self.aliases.get(s) == version)


class StageReader:
    """Reads every model's stages from one registry database, read-only."""

    def __init__(self, db_path: Path, timeout_s: float = 2.0) -> None:
        self.db_path = Path(db_path)
        self._timeout_s = timeout_s

    def exists(self) -> bool:
        return self.db_path.is_file()

    def read(self) -> dict[str, ModelStages]:
        """Model name -> stages, for every model with at least one alias (blocking; run it in a
        thread). Raises StageReadError when the file exists but is not a readable registry."""
        uri = f"file:{quote(str(self.db_path.resolve()))}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=self._timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise StageReadError(f"{self.db_path}: cannot open read-only ({exc})") from None
        try:
            db.execute("PRAGMA query_only = ON")
            db.execute("BEGIN")  # aliases and history from one snapshot
            aliases = db.execute("SELECT model, stage, version FROM aliases").fetchall()
            moves = production_moves(db)
            thresholds = db.execute(
                "SELECT model, version, threshold FROM versions WHERE threshold IS NOT NULL"
            ).fetchall()
            # a file no onyxserve with variants has opened yet has no such table (read-only here)
            variants = (
                db.execute("SELECT model, name, version, weight FROM variants").fetchall()
                if has_table(db, "variants") else []
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StageReadError(f"{self.db_path}: not a readable registry ({exc})") from None
        finally:
            db.close()
        by_model: dict[str, dict[str, str]] = {}
        for model, stage, version in aliases:
            by_model.setdefault(model, {})[stage] = str(version)
        decisions: dict[str, dict[str, float]] = {}
        for model, version, threshold in thresholds:
            decisions.setdefault(model, {})[str(version)] = float(threshold)
        splits: dict[str, list[Variant]] = {}
        for model, name, version, weight in variants:
            splits.setdefault(model, []).append(Variant(name, str(version), float(weight)))
        return {
            name: ModelStages(
                by_model.get(name, {}),
                earlier_production(moves.get(name, ()), by_model.get(name, {}).get("production")),
                decisions.get(name, {}),
                _split(splits.get(name, []), by_model.get(name, {}).get("production")),
            )
            for name in by_model.keys() | decisions.keys()
        }


def _split(rows: list[Variant], production: str | None) -> Split:
    """The stored split in its one order (primary first, then by version); () without a
    production version to be its primary (the registry keeps it in it)."""
    if production is None or not any(x.version == production for x in rows):
        return ()
    return tuple(sorted(rows, key=lambda x: (x.version != production, int(x.version))))

