"""The SQLite queue's tables and every statement it runs on them; the rules stay in sqlite.py."""

from __future__ import annotations

import sqlite3
from typing import Any

from queue_consumer.errors import ConfigurationError

from ._connections import transaction

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_consumer_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue_consumer_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    visible_at  REAL    NOT NULL,  -- due time when waiting, lease expiry when leased
    lease       TEXT,              -- NULL unless leased
    created_at  REAL    NOT NULL,
    last_error  TEXT
);
-- get(): visible messages of one queue in (visible_at, id) order, straight off the index.
CREATE INDEX IF NOT EXISTS queue_consumer_messages_due
    ON queue_consumer_messages (queue, visible_at);
CREATE TABLE IF NOT EXISTS queue_consumer_dead_letters (
    id          INTEGER PRIMARY KEY,
    queue       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    attempts    INTEGER NOT NULL,
    created_at  REAL    NOT NULL,
    died_at     REAL    NOT NULL,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS queue_consumer_dead_letters_queue
    ON queue_consumer_dead_letters (queue, died_at);
"""

_M = "queue_consumer_messages"
_D = "queue_consumer_dead_letters"

Key = tuple[int, str]  # (message id, lease token): one delivery

_PICK = (
    f"SELECT id FROM {_M} WHERE queue = :queue AND visible_at <= :now "
    "ORDER BY visible_at, id LIMIT :limit"
)
_LEASE = (
    f"UPDATE {_M} SET lease = :lease, visible_at = :until, attempts = attempts + 1 "
    f"WHERE id IN ({_PICK})"
)
_LEASED_COLUMNS = "id, kind, body, attempts, created_at"
_DELETE_LEASED = f"DELETE FROM {_M} WHERE id = ? AND lease = ?"
_BURY = (
    f"INSERT INTO {_D} (id, queue, kind, body, attempts, created_at, died_at, last_error) "
    f"SELECT id, queue, kind, body, attempts, created_at, ?, ? FROM {_M} "
    "WHERE id = ? AND lease = ?"
)


def has_schema(conn: sqlite3.Connection) -> bool:
    """Whether the file holds the queue's tables (a queue was ever opened on it)."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue_consumer_schema'"
    ).fetchone()
    return row is not None


def create_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables if missing; refuse a file a newer version wrote."""
    with transaction(conn):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        (version,) = conn.execute("SELECT MAX(version) FROM queue_consumer_schema").fetchone()
        if version is None:
            conn.execute("INSERT INTO queue_consumer_schema VALUES (?)", (SCHEMA_VERSION,))
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{path!r} was written by a newer queue_consumer "
            f"(schema {version}, this one knows {SCHEMA_VERSION})"
        )


def insert(
    conn: sqlite3.Connection,
    queue: str,
    rows: list[tuple[str, str | bytes]],
    due: float,
    now: float,
) -> list[int]:
    ids = []
    for kind, data in rows:
        cursor = conn.execute(
            f"INSERT INTO {_M} (queue, kind, body, visible_at, created_at) VALUES (?, ?, ?, ?, ?)",
            (queue, kind, data, due, now),
        )
        ids.append(int(cursor.lastrowid or 0))
    return ids


def any_visible(conn: sqlite3.Connection, queue: str, now: float) -> bool:
    # fetchall: run the statement to its end, so it holds no read snapshot.
    sql = f"SELECT 1 FROM {_M} WHERE queue = ? AND visible_at <= ? LIMIT 1"
    return bool(conn.execute(sql, (queue, now)).fetchall())


def lease(conn: sqlite3.Connection, params: dict[str, Any], *, returning: bool) -> list[Any]:
    """Lease the oldest visible messages: rows of (id, kind, body, attempts, created_at)."""
    if returning:
        return conn.execute(f"{_LEASE} RETURNING {_LEASED_COLUMNS}", params).fetchall()
    conn.execute(_LEASE, params)
    return conn.execute(
        f"SELECT {_LEASED_COLUMNS} FROM {_M} WHERE queue = :queue AND lease = :lease", params
    ).fetchall()


def extend(conn: sqlite3.Connection, keys: list[Key], until: float) -> list[Key]:
    """Move lease expiries to ``until``; returns the keys whose lease was already gone."""
    lost = []
    for message_id, lease_token in keys:
        cursor = conn.execute(
            f"UPDATE {_M} SET visible_at = ? WHERE id = ? AND lease = ?",
            (until, message_id, lease_token),
        )
        if cursor.rowcount == 0:
            lost.append((message_id, lease_token))
    return lost


def delete(conn: sqlite3.Connection, keys: list[Key]) -> int:
    return conn.executemany(_DELETE_LEASED, keys).rowcount


def retry(conn: sqlite3.Connection, rows: list[tuple[float, str | None, int, str]]) -> int:
    """Unlease (due time, last error, id, lease) rows until their due time."""
    return conn.executemany(
        f"UPDATE {_M} SET lease = NULL, visible_at = ?, last_error = ? WHERE id = ? AND lease = ?",
        rows,
    ).rowcount


def release(conn: sqlite3.Connection, keys: list[Key], now: float) -> int:
    # Back to their place by age (visible_at = created_at <= now), not to the tail.
    return conn.executemany(
        f"UPDATE {_M} SET lease = NULL, visible_at = MIN(created_at, ?), "
        "attempts = MAX(attempts - 1, 0) WHERE id = ? AND lease = ?",
        [(now, message_id, lease_token) for message_id, lease_token in keys],
    ).rowcount


def bury(conn: sqlite3.Connection, keys: list[Key], now: float, why: str) -> int:
    """Move still-leased messages to the dead letters; returns how many moved."""
    conn.executemany(_BURY, [(now, why, message_id, lease) for message_id, lease in keys])
    return delete(conn, keys)


def counts(conn: sqlite3.Connection, queue: str, now: float) -> tuple[int, int, int, int]:
    """(visible, delayed, in flight, dead letters) of one queue."""
    visible, delayed, in_flight = conn.execute(
        "SELECT COALESCE(SUM(visible_at <= :now), 0), "
        "COALESCE(SUM(visible_at > :now AND lease IS NULL), 0), "
        "COALESCE(SUM(visible_at > :now AND lease IS NOT NULL), 0) "
        f"FROM {_M} WHERE queue = :queue",
        {"now": now, "queue": queue},
    ).fetchone()
    (dead,) = conn.execute(f"SELECT COUNT(*) FROM {_D} WHERE queue = ?", (queue,)).fetchone()
    return visible, delayed, in_flight, dead


def dead_letters(conn: sqlite3.Connection, queue: str, limit: int) -> list[Any]:
    """Oldest first: rows of (id, kind, body, attempts, last_error, died_at, created_at)."""
    return conn.execute(
        "SELECT id, kind, body, attempts, last_error, died_at, created_at "
        f"FROM {_D} WHERE queue = ? ORDER BY died_at, id LIMIT ?",
        (queue, limit),
    ).fetchall()


def redrive(conn: sqlite3.Connection, queue: str, ids: list[int] | None, now: float) -> int:
    """Move dead letters (all, or those ``ids``) back with attempts reset."""
    params: list[tuple[Any, ...]]
    if ids is None:
        where, params = "queue = ?", [(queue,)]
    else:
        where, params = "queue = ? AND id = ?", [(queue, i) for i in ids]
    moved = conn.executemany(
        f"INSERT INTO {_M} (id, queue, kind, body, attempts, visible_at, created_at, "
        f"last_error) SELECT id, queue, kind, body, 0, ?, ?, last_error FROM {_D} "
        f"WHERE {where}",
        [(now, now, *p) for p in params],
    ).rowcount
    conn.executemany(f"DELETE FROM {_D} WHERE {where}", params)
    return moved


def purge(conn: sqlite3.Connection, queue: str, *, dead_letters: bool) -> int:
    gone = conn.execute(f"DELETE FROM {_M} WHERE queue = ?", (queue,)).rowcount
    if dead_letters:
        gone += conn.execute(f"DELETE FROM {_D} WHERE queue = ?", (queue,)).rowcount
    return gone
