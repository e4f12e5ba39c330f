"""What the JetStream queue hands out: frozen snapshots of deliveries and dead letters.

A delivery keeps its reply subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...``):
acknowledging is a publish to it, so a copy of the message pickled into another process
(or back from one) is settled by whichever queue object gets it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._bodies import decode

__all__ = [
    "DeadLetter",
    "JetStreamMessage",
    "JetStreamStatistics",
    "checked",
    "error_header",
    "read_error_header",
    "snapshot",
]

#: Headers the adapter writes: the body's kind tag, and a dead letter's history.
KIND = "QC-Kind"
ERROR = "QC-Error"
ORIGIN_SUBJECT = "QC-Subject"
ORIGIN_SEQ = "QC-Stream-Seq"
ATTEMPTS = "QC-Attempts"
DIED_AT = "QC-Died-At"
MSG_ID = "Nats-Msg-Id"
DEAD_HEADERS = (ERROR, ORIGIN_SUBJECT, ORIGIN_SEQ, ATTEMPTS, DIED_AT, MSG_ID)

_MAX_ERROR = 4000  # characters of a traceback kept with a dead letter (headers are small)


@dataclass(frozen=True)
class JetStreamMessage:
    """One delivery from a JetStream pull consumer. Picklable; no client inside.

    ``delivery_count`` is JetStream's ``num_delivered`` (1 on the first delivery);
    ``stream_seq`` (also ``id``) is the message's sequence in its stream, the same for
    every delivery; ``reply`` identifies this delivery and is what settling publishes to.
    ``body`` is what ``put`` was given (``str``, ``bytes`` or a JSON value); a message
    published by another client without the ``QC-Kind`` header has its raw ``bytes``.
    """

    __module__ = "queue_consumer.adapters.nats"

    stream_seq: int
    body: Any = field(compare=False)
    delivery_count: int
    subject: str
    reply: str
    data: bytes = field(compare=False, repr=False)
    headers: Mapping[str, str] | None = field(default=None, compare=False)
    stream: str = ""
    consumer: str = ""
    consumer_seq: int = 0
    timestamp: float = 0.0  #: when the message was stored (seconds since the epoch)
    pending: int = 0  #: messages left for the consumer when this one was delivered

    @property
    def id(self) -> int:
        return self.stream_seq

    @property
    def attempts(self) -> int:
        return self.delivery_count


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed ``max_attempts`` deliveries, kept in the dead-letter stream.

    ``id`` is its sequence in the dead-letter stream (what ``redrive(ids)`` takes);
    ``stream_seq`` and ``subject`` are where it came from.
    """

    __module__ = "queue_consumer.adapters.nats"

    id: int
    body: Any = field(compare=False)
    attempts: int
    last_error: str | None
    died_at: float
    subject: str
    stream_seq: int
    headers: Mapping[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class JetStreamStatistics:
    """What this queue object did so far (``JetStreamQueue.statistics()``)."""

    __module__ = "queue_consumer.adapters.nats"

    received: int = 0
    acked: int = 0
    rejected: int = 0
    released: int = 0
    dead_lettered: int = 0
    redriven: int = 0
    extended: int = 0
    handed_back: int = 0  #: delivered after the queue stopped reading; nak'ed at once
    settle_errors: int = 0
    unknown_settles: int = 0  #: settles of deliveries this object does not hold (any more)
    late_settles: int = 0  #: settles of a delivery this object has seen redelivered: skipped
    disconnects: int = 0
    reconnects: int = 0
    held: int = 0


def parse_reply(reply: str) -> tuple[str, str, int, int, int, float, int]:
    """(stream, consumer, delivered, stream_seq, consumer_seq, timestamp, pending) of an
    ack subject, in its v1 (``$JS.ACK.<stream>...``, 9 tokens) or v2 form (with a domain
    and an account hash, 11 or 12 tokens)."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    base = 2 if len(tokens) == 9 else 4
    return (
        tokens[base],
        tokens[base + 1],
        int(tokens[base + 2]),
        int(tokens[base + 3]),
        int(tokens[base + 4]),
        int(tokens[base + 5]) / 1e9,
        int(tokens[base + 6]),
    )


def body_of(data: bytes, headers: Mapping[str, str] | None) -> Any:
    kind = headers.get(KIND) if headers else None
    return data if kind is None else decode(kind, data)


def snapshot(
    subject: str, reply: str, data: bytes, headers: Mapping[str, str] | None
) -> JetStreamMessage:
    stream, consumer, delivered, sseq, cseq, stamp, pending = parse_reply(reply)
    return JetStreamMessage(
        sseq,
        body_of(data, headers),
        delivered,
        subject,
        reply,
        data,
        headers,
        stream,
        consumer,
        cseq,
        stamp,
        pending,
    )


def checked(messages: Iterable[JetStreamMessage]) -> list[JetStreamMessage]:
    batch = list(messages)
    for message in batch:
        if not isinstance(message, JetStreamMessage):
            raise TypeError(f"expected JetStreamMessage, got {type(message).__name__}")
    return batch


def error_header(error: str) -> str:
    """A traceback as one header line (headers end at a newline): JSON-escaped, trimmed."""
    text = error if len(error) <= _MAX_ERROR else "..." + error[-_MAX_ERROR:]
    return json.dumps(text)[1:-1]


def read_error_header(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        text: str = json.loads(f'"{value}"')
    except ValueError:
        return value
    return text
