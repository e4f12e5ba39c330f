"""Connections to one SQLite file: one thread at a time, renewed after fork, errors translated."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from queue_consumer.errors import ConfigurationError, ConsumerStateError, QueueConsumerError

# Connections a forked child inherited. Never closed or used there (SQLite forbids
# carrying a connection across fork), only kept alive so closing them cannot disturb
# the parent's locks.
_ABANDONED: list[sqlite3.Connection] = []


class SQLiteQueueError(QueueConsumerError):
    """The SQLite file could not be used: locked for too long, corrupt, unwritable."""

    __module__ = "queue_consumer.adapters.sqlite"  # where users import it from


class Connections:
    """The idle connections of one queue object to its file, for this process only.

    ``owner`` names the queue object in the error raised once it is closed.
    """

    def __init__(self, path: str, *, busy_timeout: float, synchronous: str, owner: str) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self._owner = owner
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False

    @contextmanager
    def connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """Lend a connection to this thread; translate SQLite errors on the way out."""
        try:
            conn = self._checkout()
            try:
                yield conn
            finally:
                self._checkin(conn)
        except sqlite3.Error as exc:
            raise self._translate(exc, action) from exc

    @contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction."""
        with self.connection(action) as conn, transaction(conn):
            yield conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                conn.close()

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise ConsumerStateError(f"{self._owner} is closed")
            if self._pid != os.getpid():  # forked: the parent's connections are not ours
                _ABANDONED.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # lent to one thread at a time, under _lock
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open SQLite file {self.path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")  # checked against a list
        except BaseException:
            conn.close()
            raise
        return conn

    def _checkin(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and self._pid == os.getpid():
                self._idle.append(conn)
                return
        if self._pid == os.getpid():
            conn.close()

    def _translate(self, exc: sqlite3.Error, action: str) -> Exception:
        if _is_busy(exc):
            return SQLiteQueueError(
                f"{self.path!r} stayed locked by another connection for more than "
                f"busy_timeout={self.busy_timeout}s during {action}: {exc}"
            )
        if action == "open" and not isinstance(exc, sqlite3.OperationalError):
            # "file is not a database", "database disk image is malformed"
            return ConfigurationError(f"{self.path!r} is not a usable SQLite database: {exc}")
        if _is_read_only(exc) or (action == "open" and _cannot_open(exc)):
            # A file (or directory) we may not write: restarting will not help.
            return ConfigurationError(
                f"SQLite file {self.path!r} is not writable ({exc}): the queue needs to write "
                "the file and its directory (for the -wal and -shm files)"
            )
        return SQLiteQueueError(f"{action} on SQLite file {self.path!r} failed: {exc}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so two
    # writers never both read, then deadlock upgrading to write.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def use_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    # WAL: readers never block the writer nor the writer them. The mode is stored in
    # the file, so only the first opener switches it. Switching fails at once with
    # "database is locked" (SQLite does not call the busy handler for it) while another
    # process opens the same new file, so retry until busy_timeout runs out.
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _is_read_only(exc: sqlite3.Error) -> bool:
    return "readonly" in str(exc) or getattr(exc, "sqlite_errorname", "").startswith(
        "SQLITE_READONLY"
    )


def _cannot_open(exc: sqlite3.Error) -> bool:
    return "unable to open" in str(exc) or getattr(exc, "sqlite_errorname", "").startswith(
        "SQLITE_CANTOPEN"
    )


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text
