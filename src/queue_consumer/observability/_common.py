"""What every exporter needs to know about a queue: its name, its messaging system, ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# OpenTelemetry's well-known ``messaging.system`` values where there is one; custom otherwise.
_SYSTEMS = (
    ("sqs", "aws_sqs"),
    ("rabbitmq", "rabbitmq"),
    ("amqp", "rabbitmq"),
    ("kafka", "kafka"),
    ("redis", "redis"),
    ("postgres", "postgresql"),
    ("nats", "nats"),
    ("sqlite", "sqlite"),
    ("memory", "memory"),
)

#: ``queue.stats()`` keys that mean "messages waiting to be taken", best first.
BACKLOG_KEYS = ("visible", "ApproximateNumberOfMessages", "depth")


def messaging_system(queue: Any) -> str:
    """The OTel ``messaging.system`` of ``queue``: ``aws_sqs``, ``sqlite``, ``memory``..."""
    if isinstance(queue, str):
        return "unknown"
    declared = getattr(queue, "messaging_system", None)
    if isinstance(declared, str) and declared:
        return declared
    where = f"{type(queue).__module__}.{type(queue).__name__}".lower()
    for fragment, system in _SYSTEMS:
        if fragment in where:
            return system
    return type(queue).__name__.lower()


def queue_name(queue: Any) -> str:
    """The destination name of ``queue`` (an SQS queue's name, a SQLite queue's name...)."""
    if isinstance(queue, str):
        return queue
    for attribute in ("queue_name", "name", "queue", "stream", "subject"):
        value = getattr(queue, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(queue).__name__


def message_id(message: Any) -> str | None:
    """A message's id as text (``message_id``, else ``id``), or None."""
    for attribute in ("message_id", "id"):
        value = getattr(message, attribute, None)
        if value is not None and not callable(value):
            return str(value)
    return None


def error_type(error: BaseException | str | None) -> str:
    """The exception's class name; from a traceback text, the class on its last line.

    >>> error_type("Traceback (most recent call last):\\n  ...\\nmod.BadInput: no")
    'BadInput'
    """
    if error is None:
        return ""
    if isinstance(error, BaseException):
        return type(error).__qualname__
    lines = [line for line in error.strip().splitlines() if line and not line[0].isspace()]
    if not lines:
        return "Exception"
    name = lines[-1].split(":", 1)[0].strip()
    return name.rsplit(".", 1)[-1] or "Exception"


def backlog(stats: Mapping[str, Any] | None) -> int | None:
    """Messages waiting in the queue according to its ``stats()``, or None if it cannot tell."""
    if not stats:
        return None
    for key in BACKLOG_KEYS:
        value = stats.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None
