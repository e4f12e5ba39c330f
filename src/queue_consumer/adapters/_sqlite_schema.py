"""The SQLite queue's tables, and the statements more than one of its methods runs."""

from __future__ import annotations

import sqlite3

from queue_consumer.errors import ConfigurationError

from ._sqlite_connections import transaction

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

M = "queue_consumer_messages"
D = "queue_consumer_dead_letters"

ANY_VISIBLE = f"SELECT 1 FROM {M} WHERE queue = ? AND visible_at <= ? LIMIT 1"
_PICK = (
    f"SELECT id FROM {M} WHERE queue = :queue AND visible_at <= :now "
    "ORDER BY visible_at, id LIMIT :limit"
)
LEASE = (
    f"UPDATE {M} SET lease = :lease, visible_at = :until, attempts = attempts + 1 "
    f"WHERE id IN ({_PICK})"
)
LEASED_COLUMNS = "id, kind, body, attempts, created_at"
DELETE_LEASED = f"DELETE FROM {M} WHERE id = ? AND lease = ?"
_BURY = (
    f"INSERT INTO {D} (id, queue, kind, body, attempts, created_at, died_at, last_error) "
    f"SELECT id, queue, kind, body, attempts, created_at, ?, ? FROM {M} "
    "WHERE id = ? AND lease = ?"
)


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


def bury(conn: sqlite3.Connection, keys: list[tuple[int, str]], now: float, why: str) -> int:
    """Move still-leased messages to the dead letters; returns how many moved."""
    conn.executemany(_BURY, [(now, why, message_id, lease) for message_id, lease in keys])
    return conn.executemany(DELETE_LEASED, keys).rowcount
