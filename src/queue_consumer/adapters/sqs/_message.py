"""SQS messages as plain picklable values, and the backoff policies used to reject them.

Nothing here imports boto3: messages cross process boundaries (process mode) and the
policies are pure functions of a message's receive count.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigurationError
from .. import _bodies

__all__ = [
    "BODY_KIND",
    "MAX_VISIBILITY_TIMEOUT",
    "ExponentialBackoff",
    "FixedDelay",
    "RejectPolicy",
    "SQSMessage",
    "message_from_response",
    "reject_policy_from",
]

#: The message attribute that says how to read a body that was not put as ``str``: ``b``
#: (bytes, sent as base64) or ``j`` (a JSON value). A ``str`` body is sent as it is, with no
#: attribute, so other producers and consumers of the queue see plain text.
BODY_KIND = "queue_consumer.body"

#: SQS refuses a visibility timeout beyond 12 hours from the receive.
MAX_VISIBILITY_TIMEOUT = 43_200
#: Keep this far from the 12-hour limit: SQS counts from its own clock.
_LIMIT_MARGIN = 60


def extension_seconds(timeout: int, held_for: float) -> int:
    """How long to extend a message held ``held_for`` seconds: ``timeout``, or what is left
    of SQS's 12 hours from the receive (0 or less: no longer extendable).

    >>> [extension_seconds(30, held_for) for held_for in (10.0, 43_130.0, 43_200.0)]
    [30, 10, -60]
    """
    return min(timeout, math.floor(MAX_VISIBILITY_TIMEOUT - _LIMIT_MARGIN - held_for))


#: Seconds a rejected message stays invisible, given how often it was received.
RejectPolicy = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class SQSMessage:
    """One delivery of an SQS message. Frozen and picklable, so process mode can ship it.

    Equality and hashing use the delivery (``message_id`` and ``receipt_handle``) only:
    the attribute dicts are data, not identity.
    """

    message_id: str
    receipt_handle: str
    body: Any  #: as it was put: str, bytes or a JSON value
    attributes: dict[str, str] = field(default_factory=dict, compare=False)
    message_attributes: dict[str, Any] = field(default_factory=dict, compare=False)
    receive_count: int = field(default=1, compare=False)
    group_id: str | None = field(default=None, compare=False)
    deduplication_id: str | None = field(default=None, compare=False)
    sequence_number: str | None = field(default=None, compare=False)
    md5_of_body: str | None = field(default=None, compare=False)

    @property
    def delivery_count(self) -> int:
        """Deliveries so far, 1 on the first (SQS's ApproximateReceiveCount)."""
        return self.receive_count

    @property
    def sent_timestamp(self) -> float | None:
        """When the message was sent, in seconds since the epoch (if SQS said)."""
        value = self.attributes.get("SentTimestamp")
        return int(value) / 1000 if value else None

    def attribute(self, name: str) -> Any:
        """The value of a message attribute (``StringValue`` or ``BinaryValue``), or None."""
        entry = self.message_attributes.get(name)
        if entry is None:
            return None
        if "StringValue" in entry:
            return entry["StringValue"]
        return entry.get("BinaryValue")


def encode_body(body: Any) -> tuple[str, str | None]:
    """``(MessageBody, kind)``: a str as it is (no kind), bytes as base64, JSON as text."""
    kind, data = _bodies.encode(body)
    if kind == _bodies.STR:
        return str(data), None
    if kind == _bodies.BYTES:
        return base64.b64encode(_bodies.to_bytes(data)).decode("ascii"), kind
    return str(data), kind


def decode_body(text: str, kind: str | None) -> Any:
    """The body ``encode_body`` was given; a body of an unknown kind stays text."""
    try:
        if kind == _bodies.BYTES:
            return base64.b64decode(text.encode("ascii"), validate=True)
        if kind == _bodies.JSON:
            return _bodies.decode(kind, text)
    except (ValueError, binascii.Error):  # not what the tag says: someone else's message
        return text
    return text


def wire_body(message: SQSMessage) -> str:
    """The MessageBody to send this message again (to a dead-letter queue)."""
    if message.attribute(BODY_KIND) is None:
        return str(message.body)
    return encode_body(message.body)[0]


def message_from_response(raw: Mapping[str, Any]) -> SQSMessage:
    """Build an ``SQSMessage`` from one entry of a ReceiveMessage response."""
    attributes = dict(raw.get("Attributes") or {})
    message_attributes = raw.get("MessageAttributes") or {}
    kind = (message_attributes.get(BODY_KIND) or {}).get("StringValue")
    return SQSMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=decode_body(raw.get("Body", ""), kind),
        attributes=attributes,
        message_attributes=dict(raw.get("MessageAttributes") or {}),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        group_id=attributes.get("MessageGroupId"),
        deduplication_id=attributes.get("MessageDeduplicationId"),
        sequence_number=attributes.get("SequenceNumber"),
        md5_of_body=raw.get("MD5OfBody"),
    )


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Exponential backoff on the receive count, with full jitter (the default policy).

    The n-th failed receive waits a random time in ``[0, min(cap, base * 2 ** (n - 1))]``:
    full jitter spreads a burst of failures out instead of returning them all at once.

    >>> ExponentialBackoff(base=1, cap=60, jitter=False)(3)
    4.0
    """

    base: float = 1.0
    cap: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ConfigurationError(f"backoff base and cap must be >= 0, not {self!r}")

    def __call__(self, receive_count: int) -> float:
        exponent = min(max(receive_count, 1) - 1, 32)  # 2**32 s is already past any cap
        delay = min(self.cap, self.base * 2.0**exponent)
        return random.uniform(0, delay) if self.jitter else delay


@dataclass(frozen=True, slots=True)
class FixedDelay:
    """The same delay for every failure; ``FixedDelay(0)`` makes a failure visible at once."""

    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ConfigurationError(f"reject delay must be >= 0, not {self.seconds!r}")

    def __call__(self, receive_count: int) -> float:
        return self.seconds


def reject_policy_from(value: RejectPolicy | float | str | None) -> RejectPolicy:
    """Accept a policy, a number of seconds, ``"immediate"`` / ``"exponential"``, or None."""
    if value is None or value == "exponential":
        return ExponentialBackoff()
    if value == "immediate":
        return FixedDelay(0)
    if isinstance(value, bool):
        raise ConfigurationError(f"reject_policy must be a callable or seconds, not {value!r}")
    if isinstance(value, (int, float)):
        return FixedDelay(float(value))
    if callable(value):
        return value
    raise ConfigurationError(
        f"reject_policy must be a callable receive_count -> seconds, a number of seconds, "
        f"'immediate' or 'exponential', not {value!r}"
    )
