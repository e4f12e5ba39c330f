"""What the PostgreSQL queue hands out: deliveries, dead letters, and its own counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DeadLetter",
    "Key",
    "PostgresMessage",
    "PostgresStatistics",
    "checked",
    "lease_keys",
    "message_id",
]

#: (message id, lease token): one delivery, what cleanup / reject / release / extend match on.
Key = tuple[int, str]


@dataclass(frozen=True)
class PostgresMessage:
    """One delivery of a message. Frozen and picklable (process mode); no connection inside.

    ``attempts`` counts deliveries (1 on the first; ``delivery_count`` is the same number);
    ``lease`` is this delivery's token: settling matches ``(id, lease)``, so a late holder
    whose lease expired and went to another consumer cannot touch the message. Times are
    the server's (seconds since the epoch).
    """

    __module__ = "queue_consumer.adapters.postgres"  # where users import it from

    id: int
    body: Any = field(compare=False)  # may be an unhashable dict; (id, lease) is identity
    attempts: int
    lease: str
    queue: str = "default"
    group: str | None = None
    created_at: float = 0.0
    headers: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def delivery_count(self) -> int:
        """Deliveries so far, this one included (1 on the first)."""
        return self.attempts


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed ``max_attempts`` deliveries. ``redrive()`` sends it back."""

    __module__ = "queue_consumer.adapters.postgres"

    id: int
    body: Any = field(compare=False)
    attempts: int
    last_error: str | None
    died_at: float
    queue: str = "default"
    created_at: float = 0.0
    group: str | None = None


@dataclass(frozen=True)
class PostgresStatistics:
    """What this queue object did so far (this process only; ``stats()`` reads the server)."""

    __module__ = "queue_consumer.adapters.postgres"

    received: int = 0  #: messages get() handed out
    deleted: int = 0  #: cleaned up
    retried: int = 0  #: rejected, back after a backoff
    dead_lettered: int = 0  #: moved to the dead letters (rejected, or last lease expired)
    released: int = 0  #: back at once, the attempt not counted
    extended: int = 0  #: lease extensions (by hand or the heartbeat)
    stale: int = 0  #: settles or extensions of a delivery this one no longer held: not applied
    reconnects: int = 0  #: statements retried on a fresh connection after one was lost
    listener_reconnects: int = 0  #: LISTEN connections lost and opened again
    notifications: int = 0  #: NOTIFY wake-ups received
    held: int = 0  #: deliveries handed out and not settled yet


def checked(messages: Iterable[PostgresMessage]) -> list[PostgresMessage]:
    batch = list(messages)
    for message in batch:
        if not isinstance(message, PostgresMessage):
            raise TypeError(f"expected PostgresMessage, got {type(message).__name__}")
    return batch


def lease_keys(messages: Iterable[PostgresMessage]) -> list[Key]:
    return [(m.id, m.lease) for m in checked(messages)]


def message_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"message ids are ints, not {type(value).__name__}")
    return value
