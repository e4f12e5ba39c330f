"""What the Redis Streams queue hands out (deliveries, dead letters), read from entries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._bodies import decode, encode

__all__ = [
    "DeadLetter",
    "RedisMessage",
    "carried_attempts",
    "checked",
    "entry_fields",
    "flat_to_dict",
    "read_body",
    "text",
]

_MODULE = "queue_consumer.adapters.redis"


@dataclass(frozen=True)
class RedisMessage:
    """One delivery of a stream entry. Picklable, so it can go to handler processes.

    ``delivery_count`` counts deliveries (1 on the first), across retries that moved the
    entry (a long backoff re-adds it with a new ``id``). ``delivered`` is the group's own
    counter for this entry at this delivery: with ``consumer`` it fences the settles, so a
    late ``cleanup`` of an entry someone else took back is counted, never applied.
    """

    __module__ = _MODULE

    id: str
    body: Any = field(compare=False)  # may be an unhashable dict; (id, delivered) is identity
    delivery_count: int
    delivered: int
    stream: str
    consumer: str

    @property
    def attempts(self) -> int:
        """The same as ``delivery_count`` (the SQLite adapter's name for it)."""
        return self.delivery_count


@dataclass(frozen=True)
class DeadLetter:
    """An entry that failed ``max_attempts`` deliveries. ``redrive()`` sends it back."""

    __module__ = _MODULE

    id: str
    body: Any = field(compare=False)
    attempts: int
    last_error: str | None
    died_at: float  # server time, seconds since the epoch
    source_id: str  # its id on the stream when it died
    stream: str


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_fields(body: Any) -> dict[str, bytes | str]:
    kind, data = encode(body)
    return {"k": kind, "d": data}


def read_body(fields: Mapping[bytes, bytes]) -> Any:
    """The body of an entry. One written by another producer (no ``k``/``d`` fields) is
    handed over as its fields, a dict of text."""
    kind = fields.get(b"k")
    data = fields.get(b"d")
    if kind is not None and data is not None:
        return decode(text(kind), data)
    return {text(k): _text_or_bytes(v) for k, v in fields.items()}


def flat_to_dict(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def carried_attempts(fields: Mapping[bytes, bytes]) -> int:
    try:
        return int(fields.get(b"a", b"0"))
    except ValueError:
        return 0


def checked(messages: Iterable[RedisMessage]) -> list[RedisMessage]:
    batch = list(messages)
    for message in batch:
        if not isinstance(message, RedisMessage):
            raise TypeError(f"expected RedisMessage, got {type(message).__name__}")
    return batch


def _text_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value
