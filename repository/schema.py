"""The registry database's schema, written once: its tables, the names of stages and approvals,
and the replay of production history.

Two modules open ``registry.db`` and each keeps its own connection handling: ``registry`` writes
(``BEGIN IMMEDIATE``, WAL, ``synchronous=FULL``), ``stages`` is the server's read-only snapshot
(``mode=ro``, ``query_only``). What they must agree on -- the table layout, what a stage is
called, which versions held production before and with which split -- lives here, so the two
cannot drift apart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

STAGES = ("production", "shadow", "staging", "archived")
SERVED_STAGES = tuple(s for s in STAGES if s != "archived")  # archived versions are kept, never loaded
LIVE_STAGES = ("production", "shadow")  # see live traffic: approved versions only (unless forced)
APPROVALS = ("pending", "approved", "rejected")
# PRAGMA user_version; a newer file is refused by an older onyxserve. 2: production variants
# (the ``variants`` table, ``history.split``); ``upgrade`` brings a version 1 file up to it.
SCHEMA_VERSION = 2


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
    detail TEXT NOT NULL DEFAULT '',
    split TEXT
);
CREATE INDEX IF NOT EXISTS history_model ON history (model, id);
CREATE TABLE IF NOT EXISTS variants (
    model TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    weight REAL NOT NULL CHECK (weight >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model, name),
    UNIQUE (model, version),
    FOREIGN KEY (model, version) REFERENCES versions(model, version)
);
"""
# history.split: on a production move, the split it left (variants.to_json: primary first,
# weights in percent); NULL = the version alone. ``variants`` holds the current split of a model
# whose production traffic is shared (no rows: the production version alone); its primary is
# the production alias, which the registry keeps in it.


def upgrade(db: sqlite3.Connection) -> None:
    """Bring a file written by an older onyxserve up to ``SCHEMA`` (after it ran): CREATE ...
    IF NOT EXISTS adds new tables but never a column to an old one."""
    if not has_column(db, "history", "split"):
        db.execute("ALTER TABLE history ADD COLUMN split TEXT")


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None

# The history rows that move production: a promotion to it, a change of its split, a rollback.
PRODUCTION_ACTIONS = ("promote", "split", "rollback")

# A move as the replay reads it: (action, version) or (action, version, split); the version is
# the primary (the production alias the move left), the split its ``history.split`` (None: alone).
Move = tuple[str, "str | int"] | tuple[str, "str | int", "str | None"]
State = tuple[str, "str | None"]  # (primary version, split text or None)


def production_moves(db: sqlite3.Connection, model: str | None = None) -> dict[str, list[tuple[str, int, str | None]]]:
    """Model -> its production moves as (action, version, split), oldest first; of one ``model``
    or of all. Runs on the caller's connection, inside the caller's transaction; a file from
    before variants (no ``history.split``, read-only so not upgraded) reads as split None."""
    split = "split" if has_column(db, "history", "split") else "NULL"
    query = (
        f"SELECT model, action, version, {split} FROM history WHERE stage = 'production'"
        f" AND action IN ({_sql_names(PRODUCTION_ACTIONS)})"
    )
    if model is None:
        rows = db.execute(f"{query} ORDER BY id")
    else:
        rows = db.execute(f"{query} AND model = ? ORDER BY id", (model,))
    moves: dict[str, list[tuple[str, int, str | None]]] = {}
    for name, action, version, text in rows:
        moves.setdefault(name, []).append((action, version, text))
    return moves


def _replay(moves: Iterable[Move]) -> list[State]:
    """The production states in force, oldest first: a promotion or a split change pushes the
    state it left, a rollback pops back to the state it went to."""
    stack: list[State] = []
    for move in moves:
        state = (str(move[1]), move[2] if len(move) > 2 else None)
        if move[0] != "rollback":
            stack.append(state)
        else:
            while stack and stack[-1] != state:
                stack.pop()
            if not stack:  # the target was never seen pushed: the replay starts again from it
                stack.append(state)
    return stack


def earlier_states(moves: Iterable[Move], current: State) -> tuple[State, ...]:
    """The production states (primary, split) in force before ``current``, newest first, each
    once: what ``Registry.rollback`` walks, so a rollback restores the split as it was."""
    return tuple(dict.fromkeys(s for s in reversed(_replay(moves)) if s != current))


def earlier_production(moves: Iterable[Move], current: str | int | None) -> tuple[str, ...]:
    """The versions that held production before ``current``, newest first, from one model's
    moves in history order (the primaries of ``earlier_states``). The server falls back along
    them when the production version cannot be served."""
    now = None if current is None else str(current)
    return tuple(dict.fromkeys(v for v, _ in reversed(_replay(moves)) if v != now))
