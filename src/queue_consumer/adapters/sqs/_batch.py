"""Run an SQS ``*Batch`` call over any number of entries: groups of 10, failed ones retried.

SQS batch calls answer per entry. An entry SQS blames on the server (``SenderFault``
false: throttling, internal errors) and a call that fails outright (after botocore's own
retries) are tried again a few times with jittered backoff. An entry SQS blames on the
sender is not retried: ``gone`` if its receipt handle no longer works (the message was
deleted or delivered again), ``refused`` otherwise. What still fails after the last attempt
is ``failed``. Nothing is dropped without a verdict.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["GONE_CODES", "BatchOutcome", "run_batches"]

T = TypeVar("T")

#: SQS batch calls take at most 10 entries.
BATCH_SIZE = 10

#: The receipt handle no longer names an in-flight delivery: nothing left to do for it.
GONE_CODES = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight"})

#: entries -> response with "Successful" / "Failed" (a bound client method, QueueUrl set).
BatchCall = Callable[[list[dict[str, Any]]], Mapping[str, Any]]


@dataclass(slots=True)
class BatchOutcome(Generic[T]):
    """Every item ends in exactly one of these lists."""

    succeeded: list[tuple[T, Mapping[str, Any]]] = field(default_factory=list)
    gone: list[tuple[T, str]] = field(default_factory=list)  #: (item, SQS's reason)
    refused: list[tuple[T, str]] = field(default_factory=list)  #: sender's fault: no retry
    failed: list[tuple[T, str]] = field(default_factory=list)  #: still failing at the end
    call_errors: int = 0  #: whole calls that raised (each retried)
    retried: int = 0  #: entries sent again


def run_batches(
    call: BatchCall,
    items: Sequence[T],
    entry: Callable[[T], dict[str, Any]],
    *,
    attempts: int = 3,
    backoff: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchOutcome[T]:
    """Send ``entry(item)`` for every item, 10 per call, retrying what may succeed later."""
    outcome: BatchOutcome[T] = BatchOutcome()
    pending: list[tuple[T, str]] = [(item, "") for item in items]
    for attempt in range(attempts):
        if attempt:
            outcome.retried += len(pending)
            # Full jitter: concurrent workers retrying together would collide again.
            sleep(random.uniform(0, backoff * 2 ** (attempt - 1)))
        retry: list[tuple[T, str]] = []
        for start in range(0, len(pending), BATCH_SIZE):
            chunk = [item for item, _ in pending[start : start + BATCH_SIZE]]
            retry.extend(_one_call(call, chunk, entry, outcome))
        pending = retry
        if not pending:
            break
    outcome.failed.extend(pending)
    return outcome


def _one_call(
    call: BatchCall,
    chunk: list[T],
    entry: Callable[[T], dict[str, Any]],
    outcome: BatchOutcome[T],
) -> list[tuple[T, str]]:
    # Ids are positions: a message id may repeat in a batch (two deliveries), a position not.
    entries = [{**entry(item), "Id": str(index)} for index, item in enumerate(chunk)]
    try:
        response = call(entries)
    except Exception as exc:  # botocore already retried; try the whole chunk again later
        outcome.call_errors += 1
        return [(item, repr(exc)) for item in chunk]
    retry: list[tuple[T, str]] = []
    answered: set[int] = set()
    for success in response.get("Successful", ()):
        answered.add(int(success["Id"]))
        outcome.succeeded.append((chunk[int(success["Id"])], success))
    for failure in response.get("Failed", ()):
        answered.add(int(failure["Id"]))
        item = chunk[int(failure["Id"])]
        reason = f"{failure.get('Code', '?')}: {failure.get('Message', '')}"
        if failure.get("Code") in GONE_CODES:
            outcome.gone.append((item, reason))
        elif failure.get("SenderFault"):
            outcome.refused.append((item, reason))
        else:
            retry.append((item, reason))
    # An entry the response does not mention has no verdict yet: send it again.
    retry.extend((item, "no answer") for i, item in enumerate(chunk) if i not in answered)
    return retry
