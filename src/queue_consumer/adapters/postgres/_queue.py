"""PostgresQueue: the SQLite queue's rules (leases, attempts, backoff, dead letters) on a
PostgreSQL server shared by many hosts. The SQL is in ``_statements``; connections in
``_connections``; the NOTIFY wake-up in ``_listener``."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Collection, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import psycopg

from ... import _checks as checks
from ...errors import ConfigurationError, ConsumerStateError
from .._bodies import decode
from .._lease import LeaseKeeper
from .._lifecycle import ReopenableQueue
from . import _statements as statements
from ._combining import Combiner
from ._connections import Connections
from ._inspection import Inspection
from ._listener import Listener
from ._messages import (
    Key,
    PostgresMessage,
    checked,
    lease_keys,
)
from ._producing import Producing
from ._settings import check_name, mask

__all__ = ["PostgresQueue"]

log = logging.getLogger("queue_consumer.adapters.postgres")


class PostgresQueue(Producing, Inspection, ReopenableQueue):
    """A queue in PostgreSQL tables, for many consumers on many hosts.

    ::

        queue = PostgresQueue("postgresql://app@db.internal/app", queue="emails")
        queue.put({"to": "ann@example.com"})        # str, bytes or a JSON value -> its id
        [message] = queue.get()                     # leased for visibility_timeout
        queue.cleanup([message])                    # done: deleted (1: it was still ours)

    ``conninfo`` is libpq's (a ``postgresql://`` URI or ``"host=... dbname=..."``; the
    password may come from ``PGPASSWORD`` or ``~/.pgpass``). Durations are float seconds:

    - ``queue``: the queue's name; many queues share the tables of one ``schema``.
    - ``visibility_timeout``: how long a delivery is leased before it comes back.
    - ``max_messages``: the most messages one ``get()`` returns.
    - ``max_attempts``: deliveries before a rejected (or expired) message is dead-lettered.
    - ``retry_delay`` / ``max_retry_delay``: a rejected message waits
      ``retry_delay * 2 ** (attempts - 1)``, at most ``max_retry_delay``.
    - ``wait_time``: how long ``get()`` waits on an empty queue (0: return at once).
    - ``poll_interval``: while waiting, look at the table at least this often (NOTIFY is a
      hint that can be lost); with ``listen=False`` the only way to see new messages.
    - ``listen``: wake waiting ``get()`` calls with LISTEN/NOTIFY (``put`` notifies). Turn
      it off behind PgBouncer in transaction mode (with ``prepare=False``).
    - ``declare``: create the schema and tables on first use (from ``schema.sql``).
    - ``heartbeat``: extend the lease of every message ``get()`` returned until it is
      settled, so handlers may run longer than ``visibility_timeout``; a dead process stops
      extending, and its messages come back one ``visibility_timeout`` later.
    - ``pool_size``: most pooled connections (default ``2 * cpu_count() + 2``, what the
      consumer's default ``max_workers + max_handlers`` needs); ``pool_timeout``: how long
      to wait for one.
    - ``prepare``: let psycopg prepare statements it runs often (off for PgBouncer < 1.21).
    """

    def __init__(
        self,
        conninfo: str = "",
        queue: str = "default",
        *,
        schema: str = "queue_consumer",
        visibility_timeout: float = 30.0,
        max_messages: int = 10,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        wait_time: float = 1.0,
        poll_interval: float = 1.0,
        listen: bool = True,
        declare: bool = True,
        heartbeat: bool = True,
        pool_size: int | None = None,
        pool_timeout: float = 5.0,
        prepare: bool = True,
    ) -> None:
        if not isinstance(conninfo, str):
            raise ConfigurationError(f"conninfo must be a string, not {type(conninfo).__name__}")
        self._conninfo = conninfo
        self._queue = check_name("queue", queue)
        self._schema = check_name("schema", schema)
        self.visibility_timeout = checks.seconds(
            "visibility_timeout", visibility_timeout, positive=True
        )
        self.max_messages = checks.count("max_messages", max_messages, maximum=1000)
        self.max_attempts = checks.count("max_attempts", max_attempts)
        self.retry_delay = checks.seconds("retry_delay", retry_delay)
        self.max_retry_delay = checks.seconds("max_retry_delay", max_retry_delay)
        if self.max_retry_delay < self.retry_delay:
            raise ConfigurationError(
                f"max_retry_delay ({max_retry_delay!r}) must be >= retry_delay ({retry_delay!r})"
            )
        self.wait_time = checks.seconds("wait_time", wait_time, maximum=20)
        self.poll_interval = checks.seconds("poll_interval", poll_interval, positive=True)
        self.listen = checks.flag("listen", listen)
        self.declare = checks.flag("declare", declare)
        self.heartbeat = checks.flag("heartbeat", heartbeat)
        default_size = 2 * (os.cpu_count() or 1) + 2
        self.pool_size = checks.count("pool_size", default_size if pool_size is None else pool_size)
        self._pool_size_given = pool_size is not None
        self.pool_timeout = checks.seconds("pool_timeout", pool_timeout, positive=True)
        self.prepare = checks.flag("prepare", prepare)

        self._where = f"PostgreSQL queue {self._queue!r} ({mask(conninfo) or 'libpq defaults'})"
        self._sql = statements.Statements(self._schema)
        digest = hashlib.blake2b(f"{self._schema}\x1f{self._queue}".encode(), digest_size=8)
        self._channel = f"qc_{digest.hexdigest()}"
        self._connections = Connections(
            conninfo,
            size=self.pool_size,
            timeout=self.pool_timeout,
            prepare=self.prepare,
            name=f"queue_consumer-{self._queue}",
            where=self._where,
        )
        self._listener: Listener | None = None
        self._keeper: LeaseKeeper[Key] = LeaseKeeper(
            self._beat,
            self.visibility_timeout / 3,
            name="postgres",
            enabled=self.heartbeat,
            on_error=lambda exc: None,
        )
        self._deleter: Combiner[Key] = Combiner(self._delete)
        self._ready_lock = threading.Lock()
        self._declared = False
        self._closed = threading.Event()
        self._poked = threading.Condition()  # interrupt() wakes get()s that poll
        self._interrupts = 0
        self._counts_lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("received", "deleted", "retried", "dead_lettered", "released", "extended", "stale"),
            0,
        )

    # -- the queue contract ------------------------------------------------------------

    def get(self) -> list[PostgresMessage]:
        """Lease up to ``max_messages`` visible messages, waiting at most ``wait_time``."""
        connections = self._ready()
        interrupts = self._interrupts
        # The listener starts on the first empty look (a busy queue never needs it); its
        # connecting wakes the waiters, so nothing put meanwhile waits for the poll bound.
        listener = self._listener if self.listen and self.wait_time else None
        deadline: float | None = None
        while True:
            mark = listener.mark() if listener is not None else 0
            messages, buried = connections.run("get", self._lease)
            if messages:
                self._keeper.track((m.id, m.lease) for m in messages)
                self._count(received=len(messages), dead_lettered=buried)
                return messages
            if buried:  # only spent messages came up (and went): look again at once
                self._count(dead_lettered=buried)
                continue
            if self.wait_time == 0 or self._closed.is_set():
                return []
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.wait_time
            if now >= deadline:
                return []
            pause = min(deadline - now, self.poll_interval)
            if listener is None and self.listen:
                listener = self._listener_for_waiting()
                mark = listener.mark() if listener is not None else 0
            if listener is not None:
                listener.wait(mark, pause)
            else:
                with self._poked:
                    self._poked.wait_for(lambda: self._interrupts != interrupts, pause)
            if self._closed.is_set() or self._interrupts != interrupts:
                return []  # closed or interrupted while waiting: the consumer is stopping

    def cleanup(self, messages: Iterable[PostgresMessage]) -> int:
        """Delete messages whose handler succeeded. Returns how many this delivery still held
        (a late one, whose lease went to another consumer, deletes nothing and is counted)."""
        keys = self._settling(messages)
        if not keys:
            return 0
        self._ready()
        # Concurrent cleanups (one per handler slot) share one DELETE: see _combining.
        deleted = len(self._deleter(keys))
        self._count(deleted=deleted, stale=len(keys) - deleted)
        return deleted

    def reject(self, messages: Iterable[PostgresMessage], *, error: str | None = None) -> int:
        """Retry failed messages after a backoff; dead-letter those out of attempts.

        ``error`` (the handler's traceback, say) is kept as the message's last error.
        Returns how many were still held by this delivery (and so were moved).
        """
        keys = self._settling(messages)
        if not keys:
            return 0
        params: dict[str, Any] = {
            **_key_params(keys),
            "max_attempts": self.max_attempts,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "error": error,
            "reason": error or f"rejected {self.max_attempts} times",
        }

        def work(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            row = conn.execute(self._sql.reject, params).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

        retried, buried = self._ready().run("reject", work)
        self._count(retried=retried, dead_lettered=buried, stale=len(keys) - retried - buried)
        return retried + buried

    def release(self, messages: Iterable[PostgresMessage]) -> int:
        """Return unhandled messages at once, without counting the attempt (shutdown)."""
        keys = self._settling(messages)
        if not keys:
            return 0
        params = {**_key_params(keys), "channel": self._channel}

        def work(conn: psycopg.Connection[Any]) -> int:
            released = conn.execute(self._sql.release, params).rowcount
            if released and self.listen:
                conn.execute(self._sql.notify, params)
            return int(released)

        released = self._ready().run("release", work)
        self._count(released=released, stale=len(keys) - released)
        return released

    def dead_letter(self, messages: Iterable[PostgresMessage], *, error: str | None = None) -> int:
        """Move held messages straight to the dead letters (the handler raised
        ``PermanentFailure``: they can never succeed). Returns how many moved."""
        keys = self._settling(messages)
        if not keys:
            return 0
        params = {**_key_params(keys), "reason": error or "dead-lettered by its handler"}
        buried = self._ready().run(
            "dead_letter", lambda conn: conn.execute(self._sql.bury, params).rowcount
        )
        self._count(dead_lettered=buried, stale=len(keys) - buried)
        return int(buried)

    def interrupt(self) -> None:
        """Make every ``get()`` waiting on an empty queue return now (the consumer calls it
        when it shuts down, so that stopping does not wait for ``wait_time``)."""
        with self._poked:
            self._interrupts += 1
            self._poked.notify_all()
        listener = self._listener
        if listener is not None:
            listener.wake()

    def extend(self, messages: Iterable[PostgresMessage], timeout: float | None = None) -> int:
        """Lease held messages for ``timeout`` more seconds from now (default
        ``visibility_timeout``). Returns how many were still held. The heartbeat (on by
        default) does this by itself for every message ``get()`` returned."""
        seconds = self.visibility_timeout if timeout is None else timeout
        seconds = checks.seconds("timeout", seconds, positive=True)
        keys = lease_keys(messages)
        return len(keys) - len(self._extend(keys, seconds))

    def message_group(self, message: PostgresMessage) -> Hashable | None:
        """The message's group (``put(..., group=...)``): the consumer keeps its order."""
        return message.group

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this queue (``put`` notifies it)."""
        return self._channel

    def close(self) -> None:
        """Stop the heartbeat and the listener, close the connections. Safe to call twice;
        the queue cannot be used after. Messages still leased are left to their lease."""
        self._closed.set()
        self.interrupt()
        self._keeper.close()
        with self._ready_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._connections.close()

    def __repr__(self) -> str:
        return (
            f"PostgresQueue({mask(self._conninfo)!r}, queue={self._queue!r}, "
            f"schema={self._schema!r})"
        )

    def settings(self) -> dict[str, Any]:
        """The keyword arguments that open this queue again (the conninfo with its password:
        keep it out of logs)."""
        return {
            "conninfo": self._conninfo,
            "queue": self._queue,
            "schema": self._schema,
            "visibility_timeout": self.visibility_timeout,
            "max_messages": self.max_messages,
            "max_attempts": self.max_attempts,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "wait_time": self.wait_time,
            "poll_interval": self.poll_interval,
            "listen": self.listen,
            "declare": self.declare,
            "heartbeat": self.heartbeat,
            "pool_size": self.pool_size if self._pool_size_given else None,
            "pool_timeout": self.pool_timeout,
            "prepare": self.prepare,
        }

    # -- internals ---------------------------------------------------------------------

    def _ready(self) -> Connections:
        """The connections, the tables declared (or checked) once, on first use."""
        if self._closed.is_set():
            raise ConsumerStateError("Cannot use a PostgresQueue once it has been closed.")
        if not self._declared:
            with self._ready_lock:
                if not self._declared:
                    self._connections.run("declare", self._declare_tables)
                    self._declared = True
        return self._connections

    def _declare_tables(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            if self.declare:
                # Consumers starting at once: one declares, the others wait, then see it done.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (statements.DECLARE_LOCK_CLASS, self._schema),
                )
            row = conn.execute(self._sql.tables_exist, self._sql.tables).fetchone()
            if not (row and row[0]):
                if not self.declare:
                    raise ConfigurationError(
                        f"{self._where}: the tables of schema {self._schema!r} do not exist; "
                        "apply queue_consumer/adapters/postgres/schema.sql "
                        "(psql -v schema=NAME -f schema.sql) or open the queue with declare=true"
                    )
                conn.execute(statements.schema_script(self._schema))
            version_row = conn.execute(self._sql.version).fetchone()
        version = version_row[0] if version_row else None
        if version is None or version > statements.SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self._where}: schema {self._schema!r} has layout version {version!r}; this "
                f"queue_consumer knows version {statements.SCHEMA_VERSION}"
            )

    def _listener_for_waiting(self) -> Listener | None:
        if not self.listen or self.wait_time == 0:
            return None
        listener = self._listener
        if listener is None:
            with self._ready_lock:
                if self._listener is None and not self._closed.is_set():
                    self._listener = Listener(
                        lambda: self._connections.connect(autocommit=True),
                        self._channel,
                        where=self._where,
                    )
                listener = self._listener
        return listener

    def _lease(self, conn: psycopg.Connection[Any]) -> tuple[list[PostgresMessage], int]:
        params = {
            "queue": self._queue,
            "limit": self.max_messages,
            "timeout": self.visibility_timeout,
            "max_attempts": self.max_attempts,
            "expired": f"lease expired on all {self.max_attempts} attempts",
        }
        rows = conn.execute(self._sql.lease, params).fetchall()
        messages = [
            PostgresMessage(
                id, decode(kind, body), attempts, lease, self._queue, group, created, headers
            )
            for id, kind, body, attempts, lease, group, created, headers in rows
            if kind is not None
        ]
        messages.sort(key=lambda m: m.id)
        return messages, len(rows) - len(messages)

    def _delete(self, keys: list[Key]) -> set[Key]:
        """Delete the rows these deliveries still hold; return their keys."""
        params = _key_params(keys)
        rows = self._connections.run(
            "cleanup", lambda conn: conn.execute(self._sql.delete, params).fetchall()
        )
        return {(int(id), str(lease)) for id, lease in rows}

    def _settling(self, messages: Iterable[PostgresMessage]) -> list[Key]:
        keys = lease_keys(checked(messages))
        if keys:
            self._keeper.untrack(keys)
        return keys

    def _beat(self, due: dict[Key, float]) -> Collection[Key]:
        """The lease keeper's extension: every due lease by ``visibility_timeout``."""
        return self._extend(list(due), self.visibility_timeout)

    def _extend(self, keys: list[Key], seconds: float) -> list[Key]:
        """Extend leases; return the keys whose lease was already gone."""
        if not keys:
            return []
        params = {**_key_params(keys), "timeout": seconds}
        held = self._ready().run(
            "extend", lambda conn: conn.execute(self._sql.extend, params).fetchall()
        )
        still = {(int(id), str(lease)) for id, lease in held}
        lost = [key for key in keys if key not in still]
        self._count(extended=len(keys) - len(lost), stale=len(lost))
        return lost

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for name, delta in deltas.items():
                self._counts[name] += delta


def _key_params(keys: list[Key]) -> dict[str, Any]:
    """The ``ids`` and ``leases`` parameters of a settle statement (see _statements._KEYS)."""
    return {
        "ids": ",".join([str(key[0]) for key in keys]),
        "leases": ",".join([key[1] for key in keys]),
    }


if TYPE_CHECKING:  # the capabilities this queue claims, checked by mypy
    from ..._protocols import (
        Queue,
        SupportsCleanup,
        SupportsClose,
        SupportsDeadLetter,
        SupportsDeadLetters,
        SupportsExtend,
        SupportsGroups,
        SupportsInterrupt,
        SupportsRejectWithError,
        SupportsRelease,
        SupportsStats,
    )

    def _capabilities(queue: PostgresQueue) -> None:
        _get: Queue[PostgresMessage] = queue
        _cleanup: SupportsCleanup[PostgresMessage] = queue
        _reject: SupportsRejectWithError[PostgresMessage] = queue
        _dead_letter: SupportsDeadLetter[PostgresMessage] = queue
        _release: SupportsRelease[PostgresMessage] = queue
        _extend: SupportsExtend[PostgresMessage] = queue
        _groups: SupportsGroups[PostgresMessage] = queue
        _interrupt: SupportsInterrupt = queue
        _close: SupportsClose = queue
        _stats: SupportsStats = queue
        _dead: SupportsDeadLetters = queue
