"""PostgresQueue's producing side: ``put`` and ``put_many``, in the caller's transaction too."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from ... import _checks as checks
from ...observability.propagation import inject_trace_context
from .._bodies import encode, to_bytes
from . import _statements as statements
from ._settings import check_name

if TYPE_CHECKING:
    from ._connections import Connections

__all__ = ["Producing"]


class Producing:
    """Mixed into PostgresQueue (which sets these)."""

    _queue: str
    _schema: str
    _channel: str
    _sql: statements.Statements
    listen: bool

    def _ready(self) -> Connections:
        raise NotImplementedError

    def put(
        self,
        body: Any,
        *,
        delay: float = 0.0,
        group: str | None = None,
        headers: dict[str, Any] | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> int:
        """Add one message (str, bytes or a JSON value), visible after ``delay`` seconds.

        ``group``: strict FIFO within the group (one message of it leased at a time, in
        order). ``connection``: your own psycopg connection, so that the message is part of
        your transaction (it exists exactly when your business rows commit; see
        ``put_many``). Returns its id.
        """
        return self.put_many(
            [body], delay=delay, group=group, headers=headers, connection=connection
        )[0]

    def put_many(
        self,
        bodies: Iterable[Any],
        *,
        delay: float = 0.0,
        group: str | None = None,
        headers: dict[str, Any] | None = None,
        connection: psycopg.Connection[Any] | None = None,
    ) -> list[int]:
        """Add messages in one statement; returns their ids in order.

        With ``connection`` (a ``psycopg.Connection``) the insert runs on it, inside the
        transaction it has open (or starts: psycopg's default), and commits or rolls back
        with it; the NOTIFY is sent at that commit. On an autocommit connection outside a
        transaction it is a transaction of its own. Nothing is retried on your connection.
        """
        delay = checks.seconds("delay", delay)
        if group is not None:
            group = check_name("group", group)
        if connection is not None and not isinstance(connection, psycopg.Connection):
            raise TypeError(
                f"connection must be a psycopg.Connection, not {type(connection).__name__}"
            )
        # Encode everything first: a bad body must not leave half a batch behind.
        rows = [encode(body) for body in bodies]
        headers = dict(inject_trace_context(headers) or {}) or None  # with tracing on
        if not rows:
            return []
        params: dict[str, Any] = {
            "queue": self._queue,
            "kinds": [kind for kind, _ in rows],
            "bodies": [to_bytes(data) for _, data in rows],
            "headers": None if headers is None else json.dumps(headers),
            "group": group,
            "delay": delay,
            "channel": self._channel,
            "keys": [statements.group_lock_key(self._schema, self._queue, group or "")],
        }
        connections = self._ready()
        if connection is None:
            return connections.run("put", lambda conn: self._insert(conn, params, group))
        with connections.user_connection("put", connection) as conn:
            return self._insert(conn, params, group)

    def _insert(
        self, conn: psycopg.Connection[Any], params: dict[str, Any], group: str | None
    ) -> list[int]:
        if group is None:
            statement = self._sql.insert_notify if self.listen else self._sql.insert
            return sorted(row[0] for row in conn.execute(statement, params))
        # The group lock lasts until the commit: a transaction of our own on an autocommit
        # connection (ours always are), else the caller's open one.
        own = conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE
        with conn.transaction() if own else contextlib.nullcontext():
            conn.execute(self._sql.group_lock, params)
            ids = sorted(row[0] for row in conn.execute(self._sql.insert, params))
            if self.listen:
                conn.execute(self._sql.notify, params)
        return ids
