"""The SQS adapter's small parts: its error, its statistics, argument checks, entry shapes.

No boto3 here: these are plain values and pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError, QueueConsumerError
from ._message import MAX_VISIBILITY_TIMEOUT, SQSMessage

__all__ = [
    "SQSBatchError",
    "SQSStatistics",
    "delete_entry",
    "message_attributes",
    "resendable",
    "seconds",
    "send_entry",
    "validate",
    "with_needed",
]


class SQSBatchError(QueueConsumerError):
    """Some messages could not be deleted / sent / made visible, even after retries.

    ``failed`` holds ``(message, reason)`` pairs. An undeleted message comes back after
    its visibility timeout (a duplicate, never a loss).
    """

    def __init__(self, operation: str, failed: list[tuple[Any, str]]) -> None:
        self.failed = failed
        super().__init__(f"{operation}: {len(failed)} entries failed (first: {failed[0][1]})")


@dataclass(frozen=True, slots=True)
class SQSStatistics:
    """What an ``SQSQueue`` did (``queue.statistics()``)."""

    received: int = 0  #: messages ``get()`` returned
    deleted: int = 0  #: messages ``cleanup`` deleted
    rejected: int = 0  #: messages ``reject`` made visible again later
    released: int = 0  #: messages ``release`` made visible at once
    dead_lettered: int = 0  #: messages moved to ``dead_letter_queue``
    extended: int = 0  #: visibility extensions by the heartbeat
    invalid_receipts: int = 0  #: settles SQS refused: receipt expired (logged)
    failed_entries: int = 0  #: entries that failed after every retry (logged, raised)
    retried_entries: int = 0  #: batch entries sent again after a failure
    api_errors: int = 0  #: SQS calls that raised (after botocore's retries)
    sdk_retries: int = 0  #: requests botocore retried (throttling, 5xx, connection errors)
    held: int = 0  #: messages returned by ``get()`` and not settled yet


def delete_entry(message: SQSMessage) -> dict[str, Any]:
    return {"ReceiptHandle": message.receipt_handle}


def send_entry(
    body: str,
    attributes: Mapping[str, Any],
    group_id: str | None,
    deduplication_id: str | None,
) -> dict[str, Any]:
    """One SendMessageBatch entry; group and deduplication ids are for FIFO queues."""
    entry: dict[str, Any] = {"MessageBody": body}
    if attributes:
        entry["MessageAttributes"] = dict(attributes)
    if group_id is not None:
        entry["MessageGroupId"] = group_id
    if deduplication_id is not None:
        entry["MessageDeduplicationId"] = deduplication_id
    return entry


def seconds(delay: float) -> int:
    return max(0, min(MAX_VISIBILITY_TIMEOUT, math.ceil(delay) if delay > 0 else 0))


def with_needed(names: Sequence[str]) -> list[str]:
    # The adapter itself needs the receive count (backoff, dead letters) and the group id.
    wanted = list(names)
    if "All" not in wanted:
        wanted += [n for n in ("ApproximateReceiveCount", "MessageGroupId") if n not in wanted]
    return wanted


def message_attributes(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    attributes: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if isinstance(value, bytes):
            attributes[name] = {"DataType": "Binary", "BinaryValue": value}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[name] = {"DataType": "Number", "StringValue": str(value)}
        else:
            attributes[name] = {"DataType": "String", "StringValue": str(value)}
    return attributes


def resendable(attributes: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("DataType", "StringValue", "BinaryValue")
    return {name: {k: v[k] for k in keep if k in v} for name, v in attributes.items()}


def validate(args: Mapping[str, Any]) -> None:
    def check(ok: bool, what: str) -> None:
        if not ok:
            raise ConfigurationError(what)

    check(
        (args["queue_name"] is None) != (args["queue_url"] is None),
        "give exactly one of queue_name and queue_url",
    )
    check(0 <= args["wait_time_seconds"] <= 20, "wait_time_seconds must be in 0..20")
    check(1 <= args["max_messages"] <= 10, "max_messages must be in 1..10")
    timeout = args["visibility_timeout"]
    check(timeout is None or 0 <= timeout <= MAX_VISIBILITY_TIMEOUT, "visibility_timeout: 0..43200")
    check(0 < args["heartbeat_fraction"] < 1, "heartbeat_fraction must be between 0 and 1")
    check(
        (args["max_receive_count"] is None) == (args["dead_letter_queue"] is None),
        "max_receive_count and dead_letter_queue go together (or use the queue's redrive policy)",
    )
    check(
        args["max_receive_count"] is None or args["max_receive_count"] >= 1,
        "max_receive_count >= 1",
    )
    check(
        args["retry_mode"] in ("standard", "adaptive", "legacy"), "retry_mode: standard, adaptive"
    )
    check(args["request_attempts"] >= 1 and args["settle_attempts"] >= 1, "attempts must be >= 1")
    check(not (args["client"] is not None and args["session"] is not None), "client or session")
