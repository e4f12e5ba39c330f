"""The PostgreSQL queue's connection pool: statements retried on a fresh connection after a
lost one, errors that name the queue and never its password."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import ConsumerStateError, QueueConsumerError

__all__ = ["Connections", "PostgresQueueError"]

log = logging.getLogger("queue_consumer.adapters.postgres")

T = TypeVar("T")

# A statement that failed because its connection was lost (the server restarted, a
# failover, pg_terminate_backend, a dropped TCP connection) runs again on another
# connection, this many times in all.
_ATTEMPTS = 3
# A connection idle in the pool longer than this is checked (one empty round trip) before
# it is handed out, so a restart or failover during a quiet period costs no failed
# statement. One in steady use is not: a check per statement would double the round trips,
# and a statement on a dead connection is retried anyway.
_CHECK_IDLE = 1.0


# What pg_stat_activity shows when the conninfo sets no application_name of its own.
_FALLBACK_NAME: dict[str, Any] = {"fallback_application_name": "queue_consumer"}


class PostgresQueueError(QueueConsumerError):
    """A statement of the PostgreSQL queue failed (after retries on a lost connection), or
    no connection could be had within ``pool_timeout``. The message names the queue with
    its URL's password masked; the psycopg error is the ``__cause__``."""


class Connections:
    """A ``psycopg_pool.ConnectionPool`` of autocommit connections, opened on first use."""

    def __init__(
        self,
        conninfo: str,
        *,
        size: int,
        timeout: float,
        prepare: bool,
        name: str,
        where: str,
    ) -> None:
        self._conninfo = conninfo
        self._size = size
        self._timeout = timeout
        self._prepare = prepare
        self._name = name
        self._where = where  # "queue 'x' on postgresql://user:***@host/db", for messages
        self._pool: ConnectionPool | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._checking = threading.Lock()
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self.reconnects = 0

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (the LISTEN connection)."""
        return psycopg.connect(self._conninfo, **_FALLBACK_NAME, **kwargs)

    def run(self, op: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(connection)`` on a pooled connection, once more on another if it was lost."""
        for attempt in range(1, _ATTEMPTS + 1):
            conn = None
            try:
                try:
                    with self.pool().connection() as conn:
                        return work(conn)
                finally:
                    if conn is not None:
                        # When it went back to the pool (a reset callback would do this, but
                        # makes the pool return every connection through a worker thread).
                        self._returned[conn] = time.monotonic()
            except psycopg.OperationalError as exc:
                lost = conn is None or conn.broken or conn.closed
                if not lost or attempt == _ATTEMPTS:
                    raise self.error(op, exc) from exc
                self.reconnects += 1
                log.warning(
                    "%s: %s lost its connection (%s); retrying on another", self._where, op, exc
                )
                self._check_idle()
            except PoolTimeout as exc:
                raise self.error(op, exc) from exc
            except psycopg.Error as exc:
                raise self.error(op, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def user_connection(self, op: str, conn: Any) -> Iterator[Any]:
        """Errors of a statement on the caller's own connection, translated (not retried:
        the caller's transaction is the caller's)."""
        try:
            yield conn
        except psycopg.Error as exc:
            raise self.error(op, exc) from exc

    def error(self, op: str, exc: BaseException) -> PostgresQueueError:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return PostgresQueueError(f"{op} failed for {self._where}: {detail}")

    def pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:  # a get() still waiting when the queue closed: no new pool
                raise ConsumerStateError("Cannot use a PostgresQueue once it has been closed.")
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._size,
                    timeout=self._timeout,
                    kwargs={
                        "autocommit": True,
                        "prepare_threshold": 5 if self._prepare else None,
                        **_FALLBACK_NAME,
                    },
                    check=self._check,
                    name=self._name,
                    open=True,
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5.0)

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > _CHECK_IDLE:
            ConnectionPool.check_connection(conn)

    def _check_idle(self) -> None:
        """After a lost connection, test the idle ones too (a restart killed them all); one
        thread at a time, the others go on."""
        pool = self._pool
        if pool is None or not self._checking.acquire(blocking=False):
            return
        try:
            pool.check()
        except Exception as exc:  # the server is down: the next statement says so
            log.debug("%s: checking idle connections failed: %r", self._where, exc)
        finally:
            self._checking.release()
