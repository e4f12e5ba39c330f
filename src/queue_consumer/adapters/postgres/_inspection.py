"""PostgresQueue's inspection side: stats, its own counters, dead letters, redrive, purge."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg

from ... import _checks as checks
from .._bodies import decode
from .._lease import LeaseKeeper
from . import _statements as statements
from ._messages import DeadLetter, Key, PostgresStatistics, message_id

if TYPE_CHECKING:
    from ._connections import Connections
    from ._listener import Listener

__all__ = ["Inspection"]


class Inspection:
    """Mixed into PostgresQueue (which sets these)."""

    _queue: str
    _schema: str
    _channel: str
    _sql: statements.Statements
    _connections: Connections
    _listener: Listener | None
    _keeper: LeaseKeeper[Key]
    _counts: dict[str, int]
    _counts_lock: threading.Lock
    listen: bool
    retry_delay: float
    max_retry_delay: float

    def _ready(self) -> Connections:
        raise NotImplementedError

    def backoff(self, attempts: int) -> float:
        """Seconds a message rejected after ``attempts`` deliveries waits."""
        exponent = min(max(attempts - 1, 0), 60)
        return float(min(self.retry_delay * 2**exponent, self.max_retry_delay))

    def stats(self) -> dict[str, int]:
        """Counts for this queue, read off the server: ``depth`` (``visible`` +
        ``delayed``), ``visible``, ``delayed``, ``in_flight`` (leased), ``dead_letters``."""

        def work(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
            row = conn.execute(self._sql.counts, {"queue": self._queue}).fetchone()
            assert row is not None
            return int(row[0]), int(row[1]), int(row[2]), int(row[3])

        visible, delayed, in_flight, dead = self._ready().run("stats", work)
        return {
            "depth": visible + delayed,
            "visible": visible,
            "delayed": delayed,
            "in_flight": in_flight,
            "dead_letters": dead,
        }

    def statistics(self) -> PostgresStatistics:
        """What this queue object did so far (this process only)."""
        with self._counts_lock:
            counts = dict(self._counts)
        listener = self._listener
        return PostgresStatistics(
            **counts,
            reconnects=self._connections.reconnects,
            listener_reconnects=listener.reconnects if listener else 0,
            notifications=listener.notifications if listener else 0,
            held=self._keeper.held(),
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of this queue."""
        limit = checks.count("limit", limit)
        params = {"queue": self._queue, "limit": limit}
        rows = self._ready().run(
            "dead_letters", lambda conn: conn.execute(self._sql.dead_letters, params).fetchall()
        )
        return [
            DeadLetter(id, decode(kind, body), attempts, error, died, self._queue, created, group)
            for id, kind, body, attempts, error, died, created, group in rows
        ]

    def redrive(self, ids: Iterable[int] | None = None) -> int:
        """Move dead letters (all, or those ``ids``) back to the queue with attempts reset.

        A message without a group keeps its id; one of a group gets a new id at the tail
        of its group (its old place may be behind messages of the group handled since).
        """
        checked_ids = None if ids is None else [message_id(i) for i in ids]
        params = {"queue": self._queue, "ids": checked_ids, "table": self._sql.messages_table}

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                groups = [row[0] for row in conn.execute(self._sql.dead_groups, params)]
                if groups:
                    keys = sorted(
                        statements.group_lock_key(self._schema, self._queue, g) for g in groups
                    )
                    conn.execute(self._sql.group_lock, {"keys": keys})
                moved = conn.execute(self._sql.redrive, params).rowcount
                if moved and self.listen:
                    conn.execute(self._sql.notify, {"channel": self._channel})
                return int(moved)

        return self._ready().run("redrive", work)

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every message of this queue (leased ones too), and its dead letters if
        asked. Returns how many rows went."""

        def work(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                gone = conn.execute(self._sql.purge, {"queue": self._queue}).rowcount
                if dead_letters:
                    gone += conn.execute(self._sql.purge_dead, {"queue": self._queue}).rowcount
                return int(gone)

        return self._ready().run("purge", work)
