"""Wake idle get() calls on NOTIFY: one dedicated LISTEN connection per queue object.

NOTIFY is a hint, never the source of truth. It is sent at commit and lost while the
listener is disconnected, so get() also looks at the table at least every
``poll_interval``, and every reconnect of the listener wakes all waiters to look at once
(a message may have come while nobody listened: the lesson of graphile-worker #541 and
procrastinate PR #1425, whose LISTEN went deaf after a database restart).

    mark = listener.mark()        # before looking at the table
    ... nothing to lease ...
    listener.wait(mark, timeout)  # returns at once if anything happened since the mark
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["Listener"]

log = logging.getLogger("queue_consumer.adapters.postgres")

_NOTIFIES_TIMEOUT = 0.5  # how often the listening thread looks at its stop flag
_HEALTH_EVERY = 10.0  # seconds of silence after which the connection is probed
_BACKOFF = (0.1, 5.0)  # first and longest wait before reconnecting; doubles in between


class Listener:
    """LISTEN on ``channel`` from a daemon thread; count what happened in ``generation``."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        channel: str,
        *,
        where: str,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._where = where
        self._changed = threading.Condition()
        self._generation = 0  # bumped on every notification and every (re)connect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._conn: psycopg.Connection[Any] | None = None
        self.connected = False
        self.notifications = 0
        self.reconnects = 0

    def mark(self) -> int:
        """The current generation; take it *before* looking at the table."""
        self._start()
        with self._changed:
            return self._generation

    def wait(self, mark: int, timeout: float) -> bool:
        """Until something happened since ``mark`` (True) or ``timeout`` passed (False)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._generation != mark or self._stop.is_set(), timeout
            )

    def wake(self) -> None:
        """Wake every waiter now (they look at the table, or see that they should stop)."""
        self._bump()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._bump()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._changed:
            if self._pid != os.getpid():  # forked: the parent's thread is not ours
                self._thread, self._conn, self._pid = None, None, os.getpid()
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="queue_consumer-postgres-listen", daemon=True
                )
                self._thread.start()

    def _bump(self, notifications: int = 0) -> None:
        with self._changed:
            self._generation += 1
            self.notifications += notifications
            self._changed.notify_all()

    def _run(self) -> None:
        backoff = _BACKOFF[0]
        first = True
        while not self._stop.is_set():
            try:
                self._listen(first)
                return
            except Exception as exc:  # lost (terminated, restarted, network): reconnect
                if self._stop.is_set():
                    return
                if self.connected:  # an established connection was lost (not refused)
                    self.reconnects += 1
                self.connected = False
                log.warning(
                    "%s: LISTEN connection lost or refused (%s); reconnecting in %.1fs "
                    "(get() polls meanwhile)",
                    self._where,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                    backoff,
                )
            finally:
                self._close_connection()
            first = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _BACKOFF[1])

    def _listen(self, first: bool) -> None:
        conn = self._conn = self._connect()
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self.connected = True
        if not first:
            log.info("%s: LISTEN connection restored", self._where)
        self._bump()  # anything may have come while nobody listened: everyone looks again
        silent = 0.0
        while not self._stop.is_set():
            heard = False
            for _ in conn.notifies(timeout=_NOTIFIES_TIMEOUT):
                self._bump(1)  # wake the waiters now, not at the end of the timeout
                heard = True
            if heard:
                silent = 0.0
                continue
            silent += _NOTIFIES_TIMEOUT
            if silent >= _HEALTH_EVERY:  # a half-open TCP connection would never say so
                conn.execute("SELECT 1")
                silent = 0.0

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()
