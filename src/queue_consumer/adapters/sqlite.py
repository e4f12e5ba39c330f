"""A durable local queue in one SQLite file: leases, retries with backoff, dead letters.

Standard library only. Any number of threads and processes may share the file (WAL mode;
every write is one short ``BEGIN IMMEDIATE`` transaction). Several named queues can live
in one file. The life of a message::

    put() ─> waiting ─get()─> leased ─cleanup()─> deleted
               ^                │
               ├── release() ───┤  at once; the attempt does not count
               ├── reject() ────┤  after a backoff  ┐ or, after max_attempts
               └─ lease expiry ─┘  (consumer died)  ┘ deliveries, dead letter
    dead letter ─redrive()─> waiting, attempts reset

Each delivery counts one attempt and carries a fresh lease token: ``cleanup`` / ``reject``
/ ``release`` act only while the token still matches, so a late handler whose lease
expired (and whose message went to someone else) cannot delete or move it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from queue_consumer.errors import ConfigurationError, ConsumerStateError, QueueConsumerError

__all__ = ["DeadLetter", "SQLiteMessage", "SQLiteQueue", "SQLiteQueueError", "from_url"]

SCHEMA_VERSION = 1

log = logging.getLogger("queue_consumer.adapters.sqlite")

_Q = TypeVar("_Q", bound="SQLiteQueue")

# UPDATE ... RETURNING leases a batch in one statement; older SQLite takes two.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

# How often get() looks again while it waits (wait_time > 0) on an empty queue.
_POLL_INTERVAL = 0.05

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

# Body type tags, so a body comes back as the type it was put as.
_STR, _BYTES, _JSON = "s", "b", "j"

# Connections a forked child inherited. Never closed or used there (SQLite forbids
# carrying a connection across fork), only kept alive so closing them cannot disturb
# the parent's locks.
_ABANDONED: list[sqlite3.Connection] = []

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

_ANY_VISIBLE = f"SELECT 1 FROM {_M} WHERE queue = ? AND visible_at <= ? LIMIT 1"
_PICK = (
    f"SELECT id FROM {_M} WHERE queue = :queue AND visible_at <= :now "
    "ORDER BY visible_at, id LIMIT :limit"
)
_LEASE = (
    f"UPDATE {_M} SET lease = :lease, visible_at = :until, attempts = attempts + 1 "
    f"WHERE id IN ({_PICK})"
)
_LEASED_COLUMNS = "id, kind, body, attempts, created_at"
_BURY = (
    f"INSERT INTO {_D} (id, queue, kind, body, attempts, created_at, died_at, last_error) "
    f"SELECT id, queue, kind, body, attempts, created_at, ?, ? FROM {_M} "
    "WHERE id = ? AND lease = ?"
)


class SQLiteQueueError(QueueConsumerError):
    """The SQLite file could not be used: locked for too long, corrupt, unwritable."""


@dataclass(frozen=True)
class SQLiteMessage:
    """One delivery of a message. Picklable, so it can go to handler processes.

    ``attempts`` counts deliveries (1 on the first); ``lease`` identifies this delivery.
    """

    id: int
    body: Any = field(compare=False)  # may be an unhashable dict; (id, lease) is identity
    attempts: int
    lease: str
    queue: str = "default"
    created_at: float = 0.0


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed ``max_attempts`` deliveries. ``redrive()`` sends it back."""

    id: int
    body: Any = field(compare=False)
    attempts: int
    last_error: str | None
    died_at: float
    queue: str = "default"
    created_at: float = 0.0


def _now() -> float:
    # Wall clock, not monotonic: leases and due times are shared between processes.
    return time.time()


class SQLiteQueue:
    """A durable queue in one SQLite file, safe for many threads and processes.

    >>> with SQLiteQueue(tmp_path / "jobs.db", queue="emails") as queue:
    ...     queue.put({"to": "ann@example.com"})
    ...     [message] = queue.get()
    ...     queue.cleanup([message])
    1
    1

    Arguments (durations are float seconds):

    - ``visibility_timeout``: how long a delivery is leased before it comes back.
    - ``max_messages``: the most messages one ``get()`` returns.
    - ``max_attempts``: deliveries before a rejected (or expired) message is dead-lettered.
    - ``retry_delay`` / ``max_retry_delay``: a rejected message waits
      ``retry_delay * 2 ** (attempts - 1)``, at most ``max_retry_delay``.
    - ``wait_time``: how long ``get()`` waits for a message on an empty queue (0: return
      at once). Use it (1 second, say) so an idle consumer does not spin.
    - ``busy_timeout``: how long to wait for another writer's lock before giving up
      with ``SQLiteQueueError``.
    - ``synchronous``: SQLite's fsync policy. ``"NORMAL"`` (the default, about four times
      faster) survives any process crash but may lose the last transactions to a power
      loss or OS crash; ``"FULL"`` survives those too.
    - ``heartbeat``: extend the lease of every message ``get()`` returned until it is
      settled (a background thread), so a handler may run longer than
      ``visibility_timeout``; a dead process stops extending, so its messages still come
      back after one ``visibility_timeout``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        queue: str = "default",
        *,
        visibility_timeout: float = 30.0,
        max_messages: int = 10,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        wait_time: float = 0.0,
        busy_timeout: float = 10.0,
        synchronous: str = "NORMAL",
        heartbeat: bool = False,
    ) -> None:
        self._path = _check_path(path)
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue must be a non-empty name, not {queue!r}")
        self._queue = queue
        self.visibility_timeout = _seconds("visibility_timeout", visibility_timeout, positive=True)
        self.max_messages = _count("max_messages", max_messages)
        self.max_attempts = _count("max_attempts", max_attempts)
        self.retry_delay = _seconds("retry_delay", retry_delay)
        self.max_retry_delay = _seconds("max_retry_delay", max_retry_delay)
        if self.max_retry_delay < self.retry_delay:
            raise ConfigurationError(
                f"max_retry_delay ({max_retry_delay!r}) must be >= retry_delay ({retry_delay!r})"
            )
        self.wait_time = _seconds("wait_time", wait_time)
        self.busy_timeout = _seconds("busy_timeout", busy_timeout)
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}"
            )
        self.synchronous = synchronous.upper()
        if not isinstance(heartbeat, bool):
            raise ConfigurationError(f"heartbeat must be True or False, not {heartbeat!r}")
        self.heartbeat = heartbeat
        self._heartbeat = _Heartbeat(self) if heartbeat else None
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._create_schema()

    # -- the queue contract ------------------------------------------------------------

    def get(self) -> list[SQLiteMessage]:
        """Lease up to ``max_messages`` visible messages for ``visibility_timeout`` seconds."""
        deadline = None
        while True:
            messages = self._lease_batch()
            if messages is None:  # only spent messages came up (and went): look again
                continue
            if messages and self._heartbeat is not None:
                self._heartbeat.track((m.id, m.lease) for m in messages)
            if messages or self.wait_time == 0:
                return messages
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.wait_time
            if now >= deadline:
                return messages
            time.sleep(min(_POLL_INTERVAL, deadline - now))

    def cleanup(self, messages: Iterable[SQLiteMessage]) -> int:
        """Delete messages whose handler succeeded. Returns how many were still leased."""
        keys = self._settling(messages)
        if not keys:
            return 0
        with self._write("cleanup") as conn:
            return conn.executemany(f"DELETE FROM {_M} WHERE id = ? AND lease = ?", keys).rowcount

    def reject(self, messages: Iterable[SQLiteMessage], *, error: str | None = None) -> int:
        """Retry failed messages after a backoff; dead-letter those out of attempts.

        ``error`` (optional) is kept as the message's last error. Returns how many
        messages were still leased (and so were moved).
        """
        batch = _messages(messages)
        self._settling(batch)
        if not batch:
            return 0
        now = _now()
        retry = [m for m in batch if m.attempts < self.max_attempts]
        dead = [m for m in batch if m.attempts >= self.max_attempts]
        with self._write("reject") as conn:
            moved = 0
            if retry:
                moved += conn.executemany(
                    f"UPDATE {_M} SET lease = NULL, visible_at = ?, last_error = ? "
                    "WHERE id = ? AND lease = ?",
                    [(now + self.backoff(m.attempts), error, m.id, m.lease) for m in retry],
                ).rowcount
            if dead:
                reason = error or f"rejected {self.max_attempts} times"
                moved += _bury(conn, [(m.id, m.lease) for m in dead], now, reason)
            return moved

    def release(self, messages: Iterable[SQLiteMessage]) -> int:
        """Return unhandled messages at once, without counting the attempt (shutdown)."""
        keys = self._settling(messages)
        if not keys:
            return 0
        with self._write("release") as conn:
            # Back to their place by age (visible_at = created_at <= now), not to the tail.
            return conn.executemany(
                f"UPDATE {_M} SET lease = NULL, visible_at = MIN(created_at, ?), "
                "attempts = MAX(attempts - 1, 0) WHERE id = ? AND lease = ?",
                [(_now(), message_id, lease) for message_id, lease in keys],
            ).rowcount

    def extend(self, messages: Iterable[SQLiteMessage], timeout: float | None = None) -> int:
        """Lease held messages for ``timeout`` more seconds from now (default
        ``visibility_timeout``), for a handler that needs longer. Returns how many were
        still leased. ``heartbeat=True`` does this by itself for every message ``get()``
        returned until it is settled."""
        seconds = self.visibility_timeout if timeout is None else timeout
        seconds = _seconds("timeout", seconds, positive=True)
        keys = _keys(messages)
        return len(keys) - len(self._extend(keys, seconds))

    # -- producing ---------------------------------------------------------------------

    def put(self, body: Any, *, delay: float = 0.0) -> int:
        """Add one message (str, bytes or JSON value), visible after ``delay`` seconds."""
        return self.put_many([body], delay=delay)[0]

    def put_many(self, bodies: Iterable[Any], *, delay: float = 0.0) -> list[int]:
        """Add messages in one transaction; returns their ids in order."""
        delay = _seconds("delay", delay)
        # Encode everything first: a bad body must not leave half a batch behind.
        rows = [_encode(body) for body in bodies]
        if not rows:
            return []
        now = _now()
        with self._write("put") as conn:
            ids = []
            for kind, data in rows:
                cursor = conn.execute(
                    f"INSERT INTO {_M} (queue, kind, body, visible_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (self._queue, kind, data, now + delay, now),
                )
                ids.append(int(cursor.lastrowid or 0))
            return ids

    # -- dead letters and inspection ---------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """Seconds a message rejected after ``attempts`` deliveries waits."""
        exponent = min(max(attempts - 1, 0), 64)  # 2**64 * anything is past any cap
        return float(min(self.retry_delay * 2**exponent, self.max_retry_delay))

    def stats(self) -> dict[str, int]:
        """Counts for this queue: ``depth`` (``visible`` + ``delayed``), ``in_flight``
        (leased), ``dead_letters``."""
        now = _now()
        with self._connection("stats") as conn:
            visible, delayed, in_flight = conn.execute(
                "SELECT COALESCE(SUM(visible_at <= :now), 0), "
                "COALESCE(SUM(visible_at > :now AND lease IS NULL), 0), "
                "COALESCE(SUM(visible_at > :now AND lease IS NOT NULL), 0) "
                f"FROM {_M} WHERE queue = :queue",
                {"now": now, "queue": self._queue},
            ).fetchone()
            (dead,) = conn.execute(
                f"SELECT COUNT(*) FROM {_D} WHERE queue = ?", (self._queue,)
            ).fetchone()
        return {
            "depth": visible + delayed,
            "visible": visible,
            "delayed": delayed,
            "in_flight": in_flight,
            "dead_letters": dead,
        }

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of this queue."""
        limit = _count("limit", limit)
        with self._connection("dead_letters") as conn:
            rows = conn.execute(
                "SELECT id, kind, body, attempts, last_error, died_at, created_at "
                f"FROM {_D} WHERE queue = ? ORDER BY died_at, id LIMIT ?",
                (self._queue, limit),
            ).fetchall()
        return [
            DeadLetter(id, _decode(kind, body), attempts, error, died, self._queue, created)
            for id, kind, body, attempts, error, died, created in rows
        ]

    def redrive(self, ids: Iterable[int] | None = None) -> int:
        """Move dead letters (all, or those ``ids``) back to the queue with attempts reset."""
        now = _now()
        params: list[tuple[Any, ...]]
        if ids is None:
            where, params = "queue = ?", [(self._queue,)]
        else:
            where = "queue = ? AND id = ?"
            params = [(self._queue, _message_id(i)) for i in ids]
        with self._write("redrive") as conn:
            moved = conn.executemany(
                f"INSERT INTO {_M} (id, queue, kind, body, attempts, visible_at, created_at, "
                f"last_error) SELECT id, queue, kind, body, 0, ?, ?, last_error FROM {_D} "
                f"WHERE {where}",
                [(now, now, *p) for p in params],
            ).rowcount
            conn.executemany(f"DELETE FROM {_D} WHERE {where}", params)
            return moved

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every message of this queue (leased ones too), and the dead letters if
        asked. Returns how many rows went."""
        with self._write("purge") as conn:
            gone = conn.execute(f"DELETE FROM {_M} WHERE queue = ?", (self._queue,)).rowcount
            if dead_letters:
                gone += conn.execute(f"DELETE FROM {_D} WHERE queue = ?", (self._queue,)).rowcount
            return gone

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def queue(self) -> str:
        return self._queue

    def close(self) -> None:
        """Stop the heartbeat, close the connections. Safe to call twice; the queue cannot
        be used after. Messages still leased are left to their lease."""
        if self._heartbeat is not None:
            self._heartbeat.close()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                conn.close()

    def __enter__(self: _Q) -> _Q:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteQueue({self._path!r}, queue={self._queue!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its settings: a copy in another process opens its own connections.
        return (_restore, (type(self), self.settings()))

    def settings(self) -> dict[str, Any]:
        """The keyword arguments that open this queue again."""
        return {
            "path": self._path,
            "queue": self._queue,
            "visibility_timeout": self.visibility_timeout,
            "max_messages": self.max_messages,
            "max_attempts": self.max_attempts,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "wait_time": self.wait_time,
            "busy_timeout": self.busy_timeout,
            "synchronous": self.synchronous,
            "heartbeat": self.heartbeat,
        }

    # -- internals ---------------------------------------------------------------------

    def _settling(self, messages: Iterable[SQLiteMessage]) -> list[tuple[int, str]]:
        keys = _keys(messages)
        if self._heartbeat is not None:
            self._heartbeat.untrack(keys)
        return keys

    def _extend(self, keys: list[tuple[int, str]], seconds: float) -> list[tuple[int, str]]:
        """Extend leases; return the keys whose lease was already gone."""
        if not keys:
            return []
        until = _now() + seconds
        lost = []
        with self._write("extend") as conn:
            for message_id, lease in keys:
                cursor = conn.execute(
                    f"UPDATE {_M} SET visible_at = ? WHERE id = ? AND lease = ?",
                    (until, message_id, lease),
                )
                if cursor.rowcount == 0:
                    lost.append((message_id, lease))
        return lost

    def _lease_batch(self) -> list[SQLiteMessage] | None:
        now = _now()
        lease = secrets.token_hex(8)
        params = {
            "lease": lease,
            "until": now + self.visibility_timeout,
            "queue": self._queue,
            "now": now,
            "limit": self.max_messages,
        }
        with self._connection("get") as conn:
            # A read first: on an empty queue, do not take the write lock producers need.
            # fetchall: run the statement to its end, so it holds no read snapshot.
            if not conn.execute(_ANY_VISIBLE, (self._queue, now)).fetchall():
                return []
            with _transaction(conn):
                if _HAS_RETURNING:
                    rows = conn.execute(f"{_LEASE} RETURNING {_LEASED_COLUMNS}", params).fetchall()
                else:
                    conn.execute(_LEASE, params)
                    rows = conn.execute(
                        f"SELECT {_LEASED_COLUMNS} FROM {_M} "
                        "WHERE queue = :queue AND lease = :lease",
                        params,
                    ).fetchall()
                # A message whose last allowed delivery ended in an expired lease (its
                # consumer died, maybe because of it) is dead-lettered, not delivered again.
                spent = [row[0] for row in rows if row[3] > self.max_attempts]
                if spent:
                    reason = f"lease expired on all {self.max_attempts} attempts"
                    _bury(conn, [(i, lease) for i in spent], now, reason)
        rows.sort(key=lambda row: row[0])
        messages = [
            SQLiteMessage(id, _decode(kind, body), attempts, lease, self._queue, created)
            for id, kind, body, attempts, created in rows
            if attempts <= self.max_attempts
        ]
        return messages if messages or not rows else None

    def _create_schema(self) -> None:
        try:
            with self._connection("open") as conn:
                self._use_wal(conn)
                with _transaction(conn):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    row = conn.execute("SELECT MAX(version) FROM queue_consumer_schema").fetchone()
                    if row[0] is None:
                        conn.execute(
                            "INSERT INTO queue_consumer_schema VALUES (?)", (SCHEMA_VERSION,)
                        )
        except BaseException:
            self.close()
            raise
        if row[0] is not None and row[0] > SCHEMA_VERSION:
            self.close()
            raise ConfigurationError(
                f"{self._path!r} was written by a newer queue_consumer "
                f"(schema {row[0]}, this one knows {SCHEMA_VERSION})"
            )

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        # WAL: readers never block the writer nor the writer them. The mode is stored in
        # the file, so only the first opener switches it. Switching fails at once with
        # "database is locked" (SQLite does not call the busy handler for it) while another
        # process opens the same new file, so retry until busy_timeout runs out.
        deadline = time.monotonic() + self.busy_timeout
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

    @contextmanager
    def _connection(self, action: str) -> Iterator[sqlite3.Connection]:
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
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._connection(action) as conn, _transaction(conn):
            yield conn

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise ConsumerStateError(f"{self!r} is closed")
            if self._pid != os.getpid():  # forked: the parent's connections are not ours
                _ABANDONED.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # lent to one thread at a time, under _lock
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open SQLite file {self._path!r}: {exc}") from exc
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
                f"{self._path!r} stayed locked by another connection for more than "
                f"busy_timeout={self.busy_timeout}s during {action}: {exc}"
            )
        if action == "open" and not isinstance(exc, sqlite3.OperationalError):
            # "file is not a database", "database disk image is malformed"
            return ConfigurationError(f"{self._path!r} is not a usable SQLite database: {exc}")
        return SQLiteQueueError(f"{action} on SQLite file {self._path!r} failed: {exc}")


class _Heartbeat:
    """Keep the leases of messages a queue object handed out alive until they are settled.

    A daemon thread wakes every quarter of the visibility timeout and extends the leases
    held for more than half of it, so a fast handler costs nothing and a slow one is not
    delivered twice. A process that dies takes the thread with it: its leases expire.
    No lock is needed against settling: an extension only matches a live lease token, so
    one that lands after a cleanup, reject or release changes nothing.
    """

    def __init__(self, queue: SQLiteQueue) -> None:
        self._queue = queue
        self._held: dict[tuple[int, str], float] = {}  # key -> monotonic time of last lease
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.extensions = 0

    def track(self, keys: Iterable[tuple[int, str]]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and leases are not ours
                self._held, self._thread, self._pid = {}, None, os.getpid()
            self._held.update(dict.fromkeys(keys, now))
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="queue_consumer-sqlite-heartbeat", daemon=True
                )
                self._thread.start()

    def untrack(self, keys: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._queue.busy_timeout + 1)

    def _run(self) -> None:
        timeout = self._queue.visibility_timeout
        while not self._stop.wait(max(timeout / 4, 0.01)):
            cutoff = time.monotonic() - timeout / 2
            with self._lock:
                due = [key for key, leased_at in self._held.items() if leased_at <= cutoff]
            if not due:
                continue
            try:
                lost = self._queue._extend(due, timeout)
            except Exception as exc:  # a locked file, say: try again on the next beat
                log.warning("SQLite heartbeat could not extend %d lease(s): %s", len(due), exc)
                continue
            now = time.monotonic()
            with self._lock:
                for key in due:
                    if key in self._held:
                        self._held[key] = now
                for key in lost:  # someone else has it now (or it is gone): stop extending
                    self._held.pop(key, None)
                self.extensions += len(due) - len(lost)


def from_url(url: str) -> SQLiteQueue:
    """Open ``sqlite:///relative/path.db?queue=NAME&visibility_timeout=30``.

    Three slashes and a relative path (to the current directory), four for an absolute
    one: ``sqlite:////var/lib/jobs.db``. Query parameters are ``SQLiteQueue`` keyword
    arguments: ``queue``, ``visibility_timeout``, ``max_messages``, ``max_attempts``,
    ``retry_delay``, ``max_retry_delay``, ``wait_time``, ``busy_timeout``, ``synchronous``,
    ``heartbeat`` (``1`` / ``0``, ``true`` / ``false``).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a sqlite URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a sqlite URL (expected sqlite:///path.db): {url!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"a sqlite URL has no host: use sqlite:///relative.db or sqlite:////absolute.db, "
            f"not {url!r}"
        )
    path = unquote(parts.path[1:])  # the first slash only separates the (empty) host
    if not path:
        raise ConfigurationError(f"no database path in {url!r} (expected sqlite:///path.db)")
    kwargs: dict[str, Any] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name in kwargs:
            raise ConfigurationError(f"parameter {name!r} given twice in {url!r}")
        convert = _URL_PARAMETERS.get(name)
        if convert is None:
            raise ConfigurationError(
                f"unknown parameter {name!r} in {url!r} "
                f"(known: {', '.join(sorted(_URL_PARAMETERS))})"
            )
        try:
            kwargs[name] = convert(raw)
        except ValueError:
            raise ConfigurationError(f"bad value {raw!r} for {name!r} in {url!r}") from None
    return SQLiteQueue(path, **kwargs)


_URL_PARAMETERS: dict[str, Any] = {
    "queue": str,
    "visibility_timeout": float,
    "max_messages": int,
    "max_attempts": int,
    "retry_delay": float,
    "max_retry_delay": float,
    "wait_time": float,
    "busy_timeout": float,
    "synchronous": str,
    "heartbeat": lambda text: _flag(text),  # _flag is defined below
}


# -- helpers -------------------------------------------------------------------------


def _restore(cls: type[SQLiteQueue], settings: dict[str, Any]) -> SQLiteQueue:
    return cls(**settings)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


def _encode(body: Any) -> tuple[str, str | bytes]:
    if isinstance(body, str):
        return _STR, str(body)
    if isinstance(body, bytes):
        return _BYTES, bytes(body)
    try:
        return _JSON, json.dumps(body, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot put a body of type {type(body).__name__}: "
            f"use str, bytes or a JSON-serialisable value ({exc})"
        ) from exc


def _decode(kind: str, data: str | bytes) -> Any:
    # str and bytes come back from SQLite as they went in (the body column has no affinity).
    return json.loads(data) if kind == _JSON else data


def _messages(messages: Iterable[SQLiteMessage]) -> list[SQLiteMessage]:
    batch = list(messages)
    for message in batch:
        if not isinstance(message, SQLiteMessage):
            raise TypeError(f"expected SQLiteMessage, got {type(message).__name__}")
    return batch


def _keys(messages: Iterable[SQLiteMessage]) -> list[tuple[int, str]]:
    return [(m.id, m.lease) for m in _messages(messages)]


def _bury(conn: sqlite3.Connection, keys: list[tuple[int, str]], now: float, why: str) -> int:
    conn.executemany(_BURY, [(now, why, message_id, lease) for message_id, lease in keys])
    return conn.executemany(f"DELETE FROM {_M} WHERE id = ? AND lease = ?", keys).rowcount


def _message_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"message ids are ints, not {type(value).__name__}")
    return value


def _check_path(path: str | os.PathLike[str]) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise ConfigurationError(f"path must be a file path, not {path!r}") from None
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"path must be a non-empty file path, not {path!r}")
    if text == ":memory:" or text.startswith("file:"):
        raise ConfigurationError(
            f"SQLiteQueue needs a file shared by its connections, not {text!r} "
            "(for an in-process queue use queue_consumer.MemoryQueue)"
        )
    # Absolute, so a copy pickled into a process with another working directory opens
    # the same file.
    return os.path.abspath(text)


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be a finite number {bound}, not {value!r}")
    return seconds


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _flag(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.lower() not in value:
        raise ValueError(text)
    return value[text.lower()]


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
    return value
