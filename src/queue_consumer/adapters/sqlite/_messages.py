"""What the SQLite queue hands out (deliveries, dead letters) and how it stores their bodies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._bodies import decode, encode

__all__ = ["DeadLetter", "SQLiteMessage", "checked", "decode", "encode", "lease_keys", "message_id"]


@dataclass(frozen=True)
class SQLiteMessage:
    """One delivery of a message. Picklable, so it can go to handler processes.

    ``attempts`` counts deliveries (1 on the first); ``lease`` identifies this delivery.
    """

    __module__ = "queue_consumer.adapters.sqlite"  # where users import it from

    id: int
    body: Any = field(compare=False)  # may be an unhashable dict; (id, lease) is identity
    attempts: int
    lease: str
    queue: str = "default"
    created_at: float = 0.0

    @property
    def delivery_count(self) -> int:
        """Deliveries so far, 1 on the first (the attempts column)."""
        return self.attempts


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed ``max_attempts`` deliveries. ``redrive()`` sends it back."""

    __module__ = "queue_consumer.adapters.sqlite"

    id: int
    body: Any = field(compare=False)
    attempts: int
    last_error: str | None
    died_at: float
    queue: str = "default"
    created_at: float = 0.0


def checked(messages: Iterable[SQLiteMessage]) -> list[SQLiteMessage]:
    batch = list(messages)
    for message in batch:
        if not isinstance(message, SQLiteMessage):
            raise TypeError(f"expected SQLiteMessage, got {type(message).__name__}")
    return batch


def lease_keys(messages: Iterable[SQLiteMessage]) -> list[tuple[int, str]]:
    """(id, lease) of each delivery: what cleanup / reject / release match on."""
    return [(m.id, m.lease) for m in checked(messages)]


def message_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"message ids are ints, not {type(value).__name__}")
    return value
