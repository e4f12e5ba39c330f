"""The visibility heartbeat: slow handlers keep their messages, fast ones cost nothing.

The keeper itself (due times, lost handles, untrack waiting for an extension in flight) is
tested in tests/unit/test_lease_keeper.py; here is what SQS adds: the 12-hour limit, and
the real thing against the moto server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from queue_consumer.adapters.sqs import SQSQueue
from queue_consumer.adapters.sqs._message import extension_seconds
from queue_consumer.testing import wait_until

MakeQueue = Callable[..., str]


@pytest.mark.parametrize(
    ("held_for", "seconds"),
    [(0.0, 30), (43_000.0, 30), (43_125.5, 14), (43_140.0, 0), (50_000.0, -6_860)],
)
def test_extensions_never_reach_past_12_hours_from_the_receive(
    held_for: float, seconds: int
) -> None:
    assert extension_seconds(30, held_for) == seconds


# -- against the moto server ---------------------------------------------------------


def test_heartbeat_keeps_a_slow_message_invisible(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=2)
    sqs_client.send_message(QueueUrl=url, MessageBody="slow")
    other = SQSQueue(queue_url=url, wait_time_seconds=0, heartbeat=False)
    # Extend every 0.6 s: 1.4 s of slack for a slow machine before the 2 s run out.
    with SQSQueue(queue_url=url, wait_time_seconds=0, heartbeat_fraction=0.3) as queue:
        held: list[Any] = []
        wait_until(lambda: held.extend(queue.get()) or held, timeout=20)
        # Three visibility timeouts pass while the "handler" runs; nobody else gets it.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert other.get() == [], "the held message was delivered again"
            time.sleep(0.2)
        assert queue.statistics().extended >= 5
        queue.cleanup(held)
        assert queue.statistics().held == 0
    assert other.get() == []


def test_fast_handlers_cost_no_extension(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=2)
    sqs_client.send_message(QueueUrl=url, MessageBody="fast")
    with SQSQueue(queue_url=url, wait_time_seconds=0) as queue:
        held: list[Any] = []
        wait_until(lambda: held.extend(queue.get()) or held, timeout=20)
        queue.cleanup(held)
        time.sleep(1.5)  # past the moment an extension would have been due
        assert queue.statistics().extended == 0


@pytest.mark.parametrize("settle", ["release", "reject"])
def test_no_extension_after_settling(make_queue: MakeQueue, sqs_client: Any, settle: str) -> None:
    # An extension landing after a release would hide the message again for 4 s.
    url = make_queue(VisibilityTimeout=4)
    sqs_client.send_message(QueueUrl=url, MessageBody="m")
    other = SQSQueue(queue_url=url, wait_time_seconds=0, heartbeat=False)
    with SQSQueue(
        queue_url=url, wait_time_seconds=0, reject_policy=0, heartbeat_fraction=0.25
    ) as queue:
        held: list[Any] = []
        wait_until(lambda: held.extend(queue.get()) or held, timeout=20)
        wait_until(lambda: queue.statistics().extended >= 1, timeout=20)
        getattr(queue, settle)(held)
        extended = queue.statistics().extended
        assert queue.statistics().held == 0
        time.sleep(1.5)  # past a heartbeat period (1 s): a due extension would have gone out
        assert queue.statistics().extended == extended
        again: list[Any] = []
        wait_until(lambda: again.extend(other.get()) or again, timeout=3)
        other.cleanup(again)
