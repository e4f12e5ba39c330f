"""A Consumer over RabbitMQQueue: random failures in threads and processes, and the
connection closed by the server mid-run. Nothing is lost; duplicates are counted."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rabbitmq_server import close_connections, make_queue, rabbit, unique

from queue_consumer import Consumer
from queue_consumer.adapters.rabbitmq import RabbitMQMessage, RabbitMQQueue
from queue_consumer.testing import wait_until

__all__ = ["make_queue", "rabbit"]  # fixtures

MakeQueue = Callable[..., RabbitMQQueue]


def flaky(out: str, fail_rate: float, messages: Iterator[RabbitMQMessage]) -> None:
    """Fail some deliveries, the same way in any process; log each success to ``out``."""
    for message in messages:
        if random.Random(f"{message.body}/{message.delivery_count}").random() < fail_rate:
            raise RuntimeError(f"{message.body} failed on delivery {message.delivery_count}")
        with open(out, "a") as log:  # one short append: lines never interleave
            log.write(f"{message.body}\n")


def successes(out: Path) -> Counter[str]:
    return Counter(out.read_text().split()) if out.exists() else Counter()


def drained(queue: RabbitMQQueue) -> bool:
    stats = queue.stats()
    return stats["depth"] == 0 and stats["held"] == 0 and stats["buffered"] == 0


@pytest.mark.parametrize("threads", [True, False], ids=["threads", "processes"])
def test_1000_messages_random_failures_nothing_lost(
    make_queue: MakeQueue, tmp_path: Path, threads: bool
) -> None:
    total, handlers, bulk = 1000, 4, 5
    out = tmp_path / "succeeded.txt"
    queue = make_queue(prefetch=handlers * bulk, max_messages=bulk, max_attempts=3, wait_time=0.2)
    bodies = [f"job-{n}" for n in range(total)]
    queue.put_many(bodies)
    consumer = Consumer(
        queue,
        functools.partial(flaky, str(out), 0.25),
        max_workers=2,
        max_handlers=handlers,
        messages_bulk_size=bulk,
        with_thread_executor=threads,
    )
    with consumer:
        wait_until(
            lambda: sum(successes(out).values()) + queue.stats()["dead_letters"] >= total,
            timeout=120,
            message="every message handled or dead-lettered",
        )
        wait_until(lambda: drained(queue), timeout=30, message=str(queue.stats()))
    handled = successes(out)
    dead = {letter.body for letter in queue.dead_letters(limit=total)}
    assert set(handled) | dead == set(bodies)  # nothing lost
    assert not set(handled) & dead
    duplicates = sum(handled.values()) - len(handled)
    print(f"{len(handled)} handled, {len(dead)} dead-lettered, {duplicates} duplicates")
    assert duplicates == 0  # no fault here: nothing is handled twice
    assert dead  # 0.25 ** 3 of 1000: some ran out of attempts
    stats = queue.stats()
    assert stats["dead_letters"] == len(dead) == stats["dead_lettered"]
    assert stats["invalid_receipts"] == 0 and stats["retry_fallbacks"] == 0
    assert consumer.statistics().succeeded == total - len(dead)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_connection_closed_by_the_server_mid_run(
    make_queue: MakeQueue, tmp_path: Path, queue_type: str
) -> None:
    total = 300
    name = unique("qc-conn")
    queue = make_queue(
        queue_type=queue_type,
        connection_name=name,
        prefetch=8,
        max_messages=4,
        wait_time=0.2,
        max_attempts=20,
    )
    bodies = [f"m{n}" for n in range(total)]
    queue.put_many(bodies)
    handled: Counter[str] = Counter()
    lock = threading.Lock()
    cut = threading.Event()

    def handler(messages: Iterator[RabbitMQMessage]) -> None:
        for message in messages:
            # m50 is held while the connection is cut: its ack must be dropped, not sent.
            if message.body == "m50" and not cut.is_set():
                cut.wait(60)
            time.sleep(0.002)
            with lock:
                handled[message.body] += 1

    with Consumer(queue, handler, max_workers=2, max_handlers=2, messages_bulk_size=2):
        wait_until(lambda: sum(handled.values()) >= 40, timeout=60)
        assert close_connections(name) == 1
        wait_until(lambda: queue.stats()["reconnects"] >= 1, timeout=30, message="reconnected")
        cut.set()
        wait_until(lambda: set(handled) == set(bodies), timeout=90, message="all handled")
        wait_until(lambda: drained(queue), timeout=30, message=str(queue.stats()))
    stats = queue.stats()
    duplicates = sum(handled.values()) - len(handled)
    print(f"{queue_type}: {duplicates} duplicates, {stats['invalid_receipts']} dropped settles")
    assert stats["invalid_receipts"] >= 1  # m50's settle at least: dropped and counted
    assert handled["m50"] == 2  # held across the cut: redelivered, handled again
    assert duplicates <= stats["invalid_receipts"] + 8  # at most what the channel held
    assert stats["dead_letters"] == 0
