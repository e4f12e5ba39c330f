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

This module holds the rules (attempts, backoff, dead letters, leases); the SQL is in
``_tables``, connections and error translation in ``_connections``, what
``get()`` returns in ``_messages``, argument and URL checks in ``_settings``
and the lease heartbeat is the shared ``adapters._lease.LeaseKeeper``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from queue_consumer import _checks as checks
from queue_consumer.adapters._lease import LeaseKeeper
from queue_consumer.adapters._lifecycle import ReopenableQueue
from queue_consumer.errors import ConfigurationError

if TYPE_CHECKING:
    from queue_consumer._protocols import (
        Queue,
        SupportsCleanup,
        SupportsClose,
        SupportsDeadLetter,
        SupportsDeadLetters,
        SupportsExtend,
        SupportsInterrupt,
        SupportsRejectWithError,
        SupportsRelease,
        SupportsStats,
    )

from . import _tables as tables
from ._connections import Connections, SQLiteQueueError, transaction, use_wal
from ._messages import (
    DeadLetter,
    SQLiteMessage,
    checked,
    decode,
    encode,
    lease_keys,
    message_id,
)
from ._settings import (
    check_path,
    check_synchronous,
    parse_url,
)

__all__ = ["DeadLetter", "SQLiteMessage", "SQLiteQueue", "SQLiteQueueError", "from_url"]


# UPDATE ... RETURNING leases a batch in one statement; older SQLite takes two.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

# How often get() looks again while it waits (wait_time > 0) on an empty queue.
_POLL_INTERVAL = 0.05
#: The longest ``wait_time``, as SQS bounds its long poll: shutdown waits at most this long.
MAX_WAIT_TIME = 20.0


def _now() -> float:
    # Wall clock, not monotonic: leases and due times are shared between processes.
    return time.time()


class SQLiteQueue(ReopenableQueue):
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
      at once; at most 20, as SQS's long poll). Use it (1 second, say) so an idle consumer
      does not spin. ``interrupt()`` ends every wait at once (shutdown).
    - ``busy_timeout``: how long to wait for another writer's lock before giving up
      with ``SQLiteQueueError``.
    - ``synchronous``: SQLite's fsync policy. ``"NORMAL"`` (the default, about four times
      faster) survives any process crash but may lose the last transactions to a power
      loss or OS crash; ``"FULL"`` survives those too.
    - ``heartbeat`` (on by default): extend the lease of every message ``get()`` returned
      until it is settled (a background thread), so a handler may run longer than
      ``visibility_timeout`` and a fetched message still waiting for a free handler slot
      is not delivered twice; a dead process stops extending, so its messages still come
      back after one ``visibility_timeout``. A fast handler costs nothing: only leases held
      for half the visibility timeout are extended.
    - ``create``: create the file and tables if missing (the default); ``False`` opens an
      existing queue file only, so a mistyped path is an error, not an empty new queue.
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
        heartbeat: bool = True,
        create: bool = True,
    ) -> None:
        self._path = check_path(path)
        create = checks.flag("create", create)
        if not create and not os.path.isfile(self._path):
            raise ConfigurationError(
                f"no SQLite queue file at {self._path!r}: is the path mistyped? (create=False "
                "opens an existing queue only)"
            )
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue must be a non-empty name, not {queue!r}")
        self._queue = queue
        self.visibility_timeout = checks.seconds(
            "visibility_timeout", visibility_timeout, positive=True
        )
        self.max_messages = checks.count("max_messages", max_messages)
        self.max_attempts = checks.count("max_attempts", max_attempts)
        self.retry_delay = checks.seconds("retry_delay", retry_delay)
        self.max_retry_delay = checks.seconds("max_retry_delay", max_retry_delay)
        if self.max_retry_delay < self.retry_delay:
            raise ConfigurationError(
                f"max_retry_delay ({max_retry_delay!r}) must be >= retry_delay ({retry_delay!r})"
            )
        self.wait_time = checks.seconds("wait_time", wait_time, maximum=MAX_WAIT_TIME)
        self._interrupted = threading.Event()
        self.busy_timeout = checks.seconds("busy_timeout", busy_timeout)
        self.synchronous = check_synchronous(synchronous)
        self.heartbeat = checks.flag("heartbeat", heartbeat)
        # Extend a lease once it is half gone; a fast handler costs nothing.
        self._heartbeat: LeaseKeeper[tuple[int, str]] | None = (
            LeaseKeeper(
                lambda held: self._extend(list(held), self.visibility_timeout),
                self.visibility_timeout / 2,
                name="sqlite",
            )
            if self.heartbeat
            else None
        )
        self._connections = Connections(
            self._path,
            busy_timeout=self.busy_timeout,
            synchronous=self.synchronous,
            owner=repr(self),
        )
        try:
            with self._connections.connection("open") as conn:
                if not create and not tables.has_schema(conn):
                    raise ConfigurationError(
                        f"{self._path!r} holds no queue_consumer queue (create=False opens "
                        "an existing queue file only)"
                    )
                use_wal(conn, self.busy_timeout)
                tables.create_schema(conn, self._path)
        except BaseException:
            self.close()
            raise

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
            if now >= deadline or self._interrupted.wait(min(_POLL_INTERVAL, deadline - now)):
                return messages

    def interrupt(self) -> None:
        """End every ``get()`` waiting on an empty queue at once, and every later wait: the
        consumer calls it once at shutdown, so stopping never waits for ``wait_time``."""
        self._interrupted.set()

    def cleanup(self, messages: Iterable[SQLiteMessage]) -> int:
        """Delete messages whose handler succeeded. Returns how many were still leased."""
        keys = self._settling(messages)
        if not keys:
            return 0
        with self._connections.write("cleanup") as conn:
            return tables.delete(conn, keys)

    def reject(self, messages: Iterable[SQLiteMessage], *, error: str | None = None) -> int:
        """Retry failed messages after a backoff; dead-letter those out of attempts.

        ``error`` (optional) is kept as the message's last error. Returns how many
        messages were still leased (and so were moved).
        """
        batch = checked(messages)
        self._settling(batch)
        if not batch:
            return 0
        now = _now()
        retry = [m for m in batch if m.attempts < self.max_attempts]
        dead = [m for m in batch if m.attempts >= self.max_attempts]
        with self._connections.write("reject") as conn:
            moved = 0
            if retry:
                due = [(now + self.backoff(m.attempts), error, m.id, m.lease) for m in retry]
                moved += tables.retry(conn, due)
            if dead:
                reason = error or f"rejected {self.max_attempts} times"
                moved += tables.bury(conn, [(m.id, m.lease) for m in dead], now, reason)
            return moved

    def dead_letter(self, messages: Iterable[SQLiteMessage], *, error: str | None = None) -> int:
        """Move messages that can never succeed (``PermanentFailure``) to the dead letters
        now, whatever attempts they have left. Returns how many were still leased."""
        keys = self._settling(messages)
        if not keys:
            return 0
        with self._connections.write("dead_letter") as conn:
            return tables.bury(conn, keys, _now(), error or "dead-lettered by its handler")

    def release(self, messages: Iterable[SQLiteMessage]) -> int:
        """Return unhandled messages at once, without counting the attempt (shutdown)."""
        keys = self._settling(messages)
        if not keys:
            return 0
        with self._connections.write("release") as conn:
            return tables.release(conn, keys, _now())

    def extend(self, messages: Iterable[SQLiteMessage], timeout: float | None = None) -> int:
        """Lease held messages for ``timeout`` more seconds from now (default
        ``visibility_timeout``), for a handler that needs longer. Returns how many were
        still leased. ``heartbeat=True`` does this by itself for every message ``get()``
        returned until it is settled."""
        seconds = self.visibility_timeout if timeout is None else timeout
        seconds = checks.seconds("timeout", seconds, positive=True)
        keys = lease_keys(messages)
        return len(keys) - len(self._extend(keys, seconds))

    # -- producing ---------------------------------------------------------------------

    def put(self, body: Any, *, delay: float = 0.0) -> int:
        """Add one message (str, bytes or JSON value), visible after ``delay`` seconds."""
        return self.put_many([body], delay=delay)[0]

    def put_many(self, bodies: Iterable[Any], *, delay: float = 0.0) -> list[int]:
        """Add messages in one transaction; returns their ids in order."""
        delay = checks.seconds("delay", delay)
        # Encode everything first: a bad body must not leave half a batch behind.
        rows = [encode(body) for body in bodies]
        if not rows:
            return []
        now = _now()
        with self._connections.write("put") as conn:
            return tables.insert(conn, self._queue, rows, now + delay, now)

    # -- dead letters and inspection ---------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """Seconds a message rejected after ``attempts`` deliveries waits."""
        exponent = min(max(attempts - 1, 0), 64)  # 2**64 * anything is past any cap
        return float(min(self.retry_delay * 2**exponent, self.max_retry_delay))

    def stats(self) -> dict[str, int]:
        """Counts for this queue: ``depth`` (``visible`` + ``delayed``), ``in_flight``
        (leased), ``dead_letters``."""
        with self._connections.connection("stats") as conn:
            visible, delayed, in_flight, dead = tables.counts(conn, self._queue, _now())
        return {
            "depth": visible + delayed,
            "visible": visible,
            "delayed": delayed,
            "in_flight": in_flight,
            "dead_letters": dead,
        }

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of this queue."""
        limit = checks.count("limit", limit)
        with self._connections.connection("dead_letters") as conn:
            rows = tables.dead_letters(conn, self._queue, limit)
        return [
            DeadLetter(id, decode(kind, body), attempts, error, died, self._queue, created)
            for id, kind, body, attempts, error, died, created in rows
        ]

    def redrive(self, ids: Iterable[int] | None = None) -> int:
        """Move dead letters (all, or those ``ids``) back to the queue with attempts reset."""
        checked_ids = None if ids is None else [message_id(i) for i in ids]
        with self._connections.write("redrive") as conn:
            return tables.redrive(conn, self._queue, checked_ids, _now())

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every message of this queue (leased ones too), and the dead letters if
        asked. Returns how many rows went."""
        with self._connections.write("purge") as conn:
            return tables.purge(conn, self._queue, dead_letters=dead_letters)

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
        self._connections.close()

    def __repr__(self) -> str:
        return f"SQLiteQueue({self._path!r}, queue={self._queue!r})"

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
        keys = lease_keys(messages)
        if self._heartbeat is not None:
            self._heartbeat.untrack(keys)
        return keys

    def _extend(self, keys: list[tuple[int, str]], seconds: float) -> list[tuple[int, str]]:
        """Extend leases; return the keys whose lease was already gone."""
        if not keys:
            return []
        with self._connections.write("extend") as conn:
            return tables.extend(conn, keys, _now() + seconds)

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
        with self._connections.connection("get") as conn:
            # A read first: on an empty queue, do not take the write lock producers need.
            if not tables.any_visible(conn, self._queue, now):
                return []
            with transaction(conn):
                rows = tables.lease(conn, params, returning=_HAS_RETURNING)
                # A message whose last allowed delivery ended in an expired lease (its
                # consumer died, maybe because of it) is dead-lettered, not delivered again.
                spent = [row[0] for row in rows if row[3] > self.max_attempts]
                if spent:
                    reason = f"lease expired on all {self.max_attempts} attempts"
                    tables.bury(conn, [(i, lease) for i in spent], now, reason)
        rows.sort(key=lambda row: row[0])
        messages = [
            SQLiteMessage(id, decode(kind, body), attempts, lease, self._queue, created)
            for id, kind, body, attempts, created in rows
            if attempts <= self.max_attempts
        ]
        return messages if messages or not rows else None


def from_url(url: str) -> SQLiteQueue:
    """Open ``sqlite:///relative/path.db?queue=NAME&visibility_timeout=30``.

    Three slashes and a relative path (to the current directory), four for an absolute
    one: ``sqlite:////var/lib/jobs.db``. Query parameters are ``SQLiteQueue`` keyword
    arguments: ``queue``, ``visibility_timeout``, ``max_messages``, ``max_attempts``,
    ``retry_delay``, ``max_retry_delay``, ``wait_time``, ``busy_timeout``, ``synchronous``,
    ``heartbeat`` and ``create`` (``1`` / ``0``, ``true`` / ``false``, ``on`` / ``off``).
    """
    path, kwargs = parse_url(url)
    return SQLiteQueue(path, **kwargs)


if TYPE_CHECKING:  # mypy proves the capabilities SQLiteQueue claims (the consumer uses them)

    def _capabilities(queue: SQLiteQueue) -> None:
        _get: Queue[SQLiteMessage] = queue
        _cleanup: SupportsCleanup[SQLiteMessage] = queue
        _reject: SupportsRejectWithError[SQLiteMessage] = queue
        _dead: SupportsDeadLetter[SQLiteMessage] = queue
        _release: SupportsRelease[SQLiteMessage] = queue
        _extend: SupportsExtend[SQLiteMessage] = queue
        _interrupt: SupportsInterrupt = queue
        _close: SupportsClose = queue
        _stats: SupportsStats = queue
        _dead_letters: SupportsDeadLetters = queue
