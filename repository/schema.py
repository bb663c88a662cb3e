"""The registry database's schema, written once: its tables, the names of stages and approvals,
and the replay of production history.

Two modules open ``registry.db`` and each keeps its own connection handling: ``registry`` writes
(``BEGIN IMMEDIATE``, WAL, ``synchronous=FULL``), ``stages`` is the server's read-only snapshot
(``mode=ro``, ``query_only``). What they must agree on -- the table layout, what a stage is
called, which versions held production before -- lives here, so the two cannot drift apart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

STAGES = ("production", "shadow", "staging", "archived")
SERVED_STAGES = tuple(s for s in STAGES if s != "archived")  # archived versions are kept, never loaded
LIVE_STAGES = ("production", "shadow")  # see live traffic: approved versions only (unless forced)
APPROVALS = ("pending", "approved", "rejected")
SCHEMA_VERSION = 1  # PRAGMA user_version; a newer file is refused by an older onyxserve


def _sql_names(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# The CHECK lists come from the tuples above; the text is what registry.db files hold in
# sqlite_master, so it stays as it was written (CREATE ... IF NOT EXISTS never rewrites a table).
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    task TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{{}}',
    threshold REAL,
    created_at TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    approval TEXT NOT NULL DEFAULT 'pending' CHECK (approval IN ({_sql_names(APPROVALS)})),
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ({_sql_names(STAGES)})),
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model, stage),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER,
    stage TEXT,
    previous INTEGER,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_model ON history (model, id);
"""

# The history rows that move production: a promotion to it, a rollback of it.
_PRODUCTION_MOVES = (
    "SELECT model, action, version FROM history WHERE stage = 'production'"
    " AND action IN ('promote', 'rollback')"
)


def production_moves(db: sqlite3.Connection, model: str | None = None) -> dict[str, list[tuple[str, int]]]:
    """Model -> its production moves as (action, version), oldest first; of one ``model`` or of
    all. Runs on the caller's connection, inside the caller's transaction."""
    if model is None:
        rows = db.execute(f"{_PRODUCTION_MOVES} ORDER BY id")
    else:
        rows = db.execute(f"{_PRODUCTION_MOVES} AND model = ? ORDER BY id", (model,))
    moves: dict[str, list[tuple[str, int]]] = {}
    for name, action, version in rows:
        moves.setdefault(name, []).append((action, version))
    return moves


def earlier_production(moves: Iterable[tuple[str, str | int]], current: str | int | None) -> tuple[str, ...]:
    """The versions that held production before ``current``, newest first, from one model's
    (action, version) moves in history order: a promotion pushes its version, a rollback pops
    back to the version it went to. ``Registry.rollback`` goes to the first of them that still
    exists; the server falls back along them when the production version cannot be served."""
    stack: list[str] = []
    for action, version in moves:
        version = str(version)
        if action == "promote":
            stack.append(version)
        else:
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:  # the target was never seen promoted: the replay starts again from it
                stack.append(version)
    now = None if current is None else str(current)
    return tuple(dict.fromkeys(v for v in reversed(stack) if v != now))
