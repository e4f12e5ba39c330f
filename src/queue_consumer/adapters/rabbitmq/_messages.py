"""What the RabbitMQ queue hands out (deliveries, dead letters), and the headers they carry.

Nothing here imports pika: messages cross process boundaries (process mode), so they hold
plain values only, never a channel. A delivery is named by the queue object that received
it (``owner``), the channel generation (``generation``, one per connection) and the
channel's ``delivery_tag``: a settle of a delivery from an older channel is dropped, never
sent on the new one (the broker would close it for an unknown tag).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _bodies

__all__ = ["DeadLetter", "RabbitMQMessage", "attempts_before", "checked", "decode_body"]

log = logging.getLogger("queue_consumer.adapters.rabbitmq")

#: Deliveries a message had before this copy was published (carried by retries).
ATTEMPTS = "x-qc-attempts"
#: The body's kind (``_bodies``: s, b or j), so a body comes back as the type it was put as.
KIND = "x-qc-kind"
#: The last handler error, kept with a retried or dead-lettered copy.
ERROR = "x-qc-error"
#: When a copy was dead-lettered (milliseconds since the epoch), and from which queue.
DIED_AT = "x-qc-died-at"
ORIGIN = "x-qc-queue"
#: Set by quorum queues: how often the broker returned this message (requeue, lost channel).
QQ_COUNT = "x-delivery-count"
#: Broker headers a republished copy must not carry (its own counts restart).
BROKER_HEADERS = frozenset(
    {
        QQ_COUNT,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


@dataclass(frozen=True)
class RabbitMQMessage:
    """One delivery of a message. Frozen and picklable, so process mode can ship it.

    ``delivery_count`` is 1 on the first delivery: the attempts carried in the
    ``x-qc-attempts`` header by retried copies, plus a quorum queue's ``x-delivery-count``
    (returns the broker counted; on a classic queue, which says only ``redelivered``, one
    if it is set), plus one. ``headers`` are the message's own
    headers (trace context too); ``properties`` its other AMQP properties as plain values.
    """

    __module__ = "queue_consumer.adapters.rabbitmq"  # where users import it from

    id: str
    body: Any = field(compare=False)  # may be an unhashable dict; the delivery is identity
    delivery_count: int
    delivery_tag: int
    generation: int
    owner: str
    queue: str
    redelivered: bool = field(default=False, compare=False)
    headers: dict[str, Any] = field(default_factory=dict, compare=False)
    properties: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def attempts(self) -> int:
        """The same as ``delivery_count`` (the word SQLite uses)."""
        return self.delivery_count


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed ``max_attempts`` deliveries. ``redrive()`` sends it back."""

    __module__ = "queue_consumer.adapters.rabbitmq"

    id: str
    body: Any = field(compare=False)
    attempts: int
    last_error: str | None
    died_at: float | None
    queue: str


def checked(messages: Iterable[RabbitMQMessage]) -> list[RabbitMQMessage]:
    batch = list(messages)
    for message in batch:
        if not isinstance(message, RabbitMQMessage):
            raise TypeError(f"expected RabbitMQMessage, got {type(message).__name__}")
    return batch


def attempts_before(headers: Mapping[str, Any], redelivered: bool = False) -> int:
    """Deliveries this message had before the present one: those a retried copy carries,
    plus the broker's returns. A quorum queue counts them (``x-delivery-count``); a classic
    queue only says ``redelivered``, which counts as one (at least one, truly)."""
    returns = _int(headers.get(QQ_COUNT))
    if redelivered:
        returns = max(returns, 1)
    return _int(headers.get(ATTEMPTS)) + returns


def decode_body(data: bytes, headers: Mapping[str, Any], content_type: str | None) -> Any:
    """The body as it was put: by our kind header, else by the content type (a foreign
    producer's JSON is a dict, its text a str, anything else bytes)."""
    kind = headers.get(KIND)
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind not in (_bodies.STR, _bodies.BYTES, _bodies.JSON):
        ctype = (content_type or "").lower()
        kind = (
            _bodies.JSON
            if ctype.startswith("application/json")
            else _bodies.STR
            if ctype.startswith("text/")
            else _bodies.BYTES
        )
    try:
        return _bodies.decode(kind, data)
    except ValueError:  # a foreign body that is not what it claims: hand over the bytes
        log.warning("a message body is not valid %s; handing it over as bytes", kind)
        return bytes(data)


def content_type(kind: str) -> str:
    if kind == _bodies.JSON:
        return "application/json"
    if kind == _bodies.STR:
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def plain(value: Any) -> Any:
    """A header value as plain Python (pika gives bytes for some strings, Decimal, ...)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, int) and type(value) not in (int, bool):
        return int(value)  # pika's own long type: keep messages free of pika classes
    return value


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0
