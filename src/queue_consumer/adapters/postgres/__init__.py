"""Consume a queue kept in PostgreSQL tables: ``PostgresQueue`` and ``from_url`` (the
``[postgres]`` extra: psycopg 3 and psycopg-pool).

::

    from queue_consumer import Consumer
    from queue_consumer.adapters.postgres import PostgresQueue

    def handler(messages):
        for message in messages:          # PostgresMessage: id, body, attempts, lease, group...
            process(message.body)

    with PostgresQueue("postgresql://app@db/app", queue="emails") as queue:
        with Consumer(queue, handler, max_workers=2, max_handlers=8) as consumer:
            consumer.supervise(blocking=True)      # until SIGTERM / Ctrl-C

The life of a message (the SQLite queue's rules, on the server's clock)::

    put() ─> waiting ─get()─> leased ─cleanup()─> deleted
               ^                │
               ├── release() ───┤  at once; the attempt does not count
               ├── reject() ────┤  after a backoff  ┐ or, after max_attempts
               └─ lease expiry ─┘  (consumer died)  ┘ deliveries, dead letter
    dead letter ─redrive()─> waiting, attempts reset

``get()`` is one statement (``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)
RETURNING``); no transaction or row lock is held while a handler runs: the lease (a fresh
token per delivery, in the row) replaces them, and an expired lease is simply leased again.
The tables live in their own schema (``schema.sql`` beside this module), created on first
use unless ``declare=False``.
"""

from __future__ import annotations

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - the [postgres] extra is installed in dev
    raise ModuleNotFoundError(
        "the PostgreSQL adapter needs psycopg 3 and psycopg-pool: "
        "pip install 'queue-consumer[postgres]'",
        name=exc.name,
    ) from exc

from ._connections import PostgresQueueError
from ._messages import DeadLetter, PostgresMessage, PostgresStatistics
from ._queue import PostgresQueue
from ._settings import split_url

__all__ = [
    "DeadLetter",
    "PostgresMessage",
    "PostgresQueue",
    "PostgresQueueError",
    "PostgresStatistics",
    "from_url",
]


def from_url(url: str) -> PostgresQueue:
    """Open ``postgresql://USER@HOST:PORT/DB?queue=NAME&...`` (or ``postgres://``).

    Query options are ``PostgresQueue`` keyword arguments: ``queue``, ``schema``,
    ``visibility_timeout``, ``max_messages``, ``max_attempts``, ``retry_delay``,
    ``max_retry_delay``, ``wait_time``, ``poll_interval``, ``listen``, ``declare``,
    ``heartbeat``, ``pool_size``, ``pool_timeout``, ``prepare`` (flags as ``true`` /
    ``false``, ``1`` / ``0``, ``on`` / ``off``). The rest of the URL, other query
    parameters included (``sslmode``, ``application_name``...), is libpq's.
    """
    conninfo, kwargs = split_url(url)
    return PostgresQueue(conninfo, **kwargs)
