"""End to end: a Consumer over SQLiteQueue, handlers failing at random, threads and processes.

In the end every message was handled successfully and cleaned up exactly once.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_consumer import Consumer
from queue_consumer.adapters.sqlite import SQLiteMessage, SQLiteQueue
from queue_consumer.testing import wait_until

FAIL_RATE = 0.3


def flaky(
    out: str, delay: float, messages: Iterator[SQLiteMessage], fail_rate: float = FAIL_RATE
) -> None:
    """Fail some deliveries, the same way in any process; log each success to ``out``."""
    for message in messages:
        if delay:
            time.sleep(delay)
        if random.Random(f"{message.id}/{message.attempts}").random() < fail_rate:
            raise RuntimeError(f"message {message.id} failed on attempt {message.attempts}")
        # One short append per message: lines from several processes never interleave.
        with open(out, "a") as log:
            log.write(f"{message.id} {message.body} {os.getpid()}\n")


class CountingQueue(SQLiteQueue):
    """Counts what the consumer settles, and what each call really changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts_lock = threading.Lock()
        self.cleaned: Counter[int] = Counter()
        self.rejected = 0
        self.released = 0
        self.stale = 0  # settled messages whose lease had already moved on

    def cleanup(self, messages: Iterable[SQLiteMessage]) -> int:
        batch = list(messages)
        done = super().cleanup(batch)
        with self.counts_lock:
            self.cleaned.update(m.id for m in batch)
            self.stale += len(batch) - done
        return done

    def reject(self, messages: Iterable[SQLiteMessage], *, error: str | None = None) -> int:
        batch = list(messages)
        done = super().reject(batch, error=error)
        with self.counts_lock:
            self.rejected += len(batch)
            self.stale += len(batch) - done
        return done

    def release(self, messages: Iterable[SQLiteMessage]) -> int:
        batch = list(messages)
        done = super().release(batch)
        with self.counts_lock:
            self.released += len(batch)
            self.stale += len(batch) - done
        return done


def settled(queue: SQLiteQueue) -> bool:
    stats = queue.stats()
    return stats["depth"] == stats["in_flight"] == 0


def successes(out: Path) -> Counter[int]:
    if not out.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in out.read_text().splitlines())


@pytest.mark.parametrize("threads", [True, False], ids=["threads", "processes"])
def test_every_message_succeeds_and_is_cleaned_up_exactly_once(
    tmp_path: Path, threads: bool
) -> None:
    total = 300
    out = tmp_path / "succeeded.txt"
    with CountingQueue(
        tmp_path / "e2e.db",
        visibility_timeout=120,  # never expires here: any duplicate would be a bug
        max_messages=5,
        max_attempts=30,  # 0.3 ** 30: no message runs out of attempts
        retry_delay=0.01,
        max_retry_delay=0.05,
        wait_time=0.05,
    ) as queue:
        ids = queue.put_many([f"job-{n}" for n in range(total)])
        handler = functools.partial(flaky, str(out), 0.0)
        consumer = Consumer(
            queue,
            handler,
            max_workers=2,
            max_handlers=2,
            messages_bulk_size=3,
            with_thread_executor=threads,
        )
        with consumer:
            wait_until(lambda: settled(queue), timeout=90, message=f"{queue.stats()}")
        stats = consumer.statistics()
        assert queue.stats() == dict.fromkeys(queue.stats(), 0)
        assert queue.cleaned == Counter(ids)  # each cleaned up once
        assert queue.stale == 0
        assert successes(out) == Counter(ids)  # each handled successfully once
        assert queue.rejected > 0  # the failures did happen, and were retried
        assert stats.succeeded == total
        assert stats.failed == queue.rejected
        # The messages after a failing one in its chunk were never tried: released.
        assert stats.released == queue.released > 0


def test_a_consumer_shut_down_midway_hands_its_messages_to_the_next(tmp_path: Path) -> None:
    total = 120
    out = tmp_path / "succeeded.txt"
    settings: dict[str, Any] = {
        "visibility_timeout": 120,
        "max_messages": 4,
        "max_attempts": 30,
        "retry_delay": 0.01,
        "max_retry_delay": 0.05,
        "wait_time": 0.05,
    }
    with CountingQueue(tmp_path / "handover.db", **settings) as queue:
        ids = queue.put_many(range(total))
        slow = functools.partial(flaky, str(out), 0.01)
        first = Consumer(queue, slow, max_workers=2, max_handlers=2, messages_bulk_size=2)
        with first:
            wait_until(lambda: len(successes(out)) >= 20, timeout=60)
        # Shut down with work in hand: unstarted messages were released, not failed.
        assert queue.stats()["in_flight"] == 0
        with Consumer(queue, slow, max_workers=2, max_handlers=2, messages_bulk_size=2):
            wait_until(lambda: settled(queue), timeout=90, message=f"{queue.stats()}")
        assert queue.cleaned == Counter(ids)
        assert successes(out) == Counter(ids)
        assert queue.stale == 0


def test_heartbeat_lets_handlers_outlive_the_visibility_timeout(tmp_path: Path) -> None:
    out = tmp_path / "succeeded.txt"
    # Two chunks take ~1.2 s each against a 1 s lease, and a third handler slot stays free:
    # without the heartbeat a worker would take them again while they are being handled.
    with CountingQueue(
        tmp_path / "slow.db", visibility_timeout=1, max_messages=3, heartbeat=True, wait_time=0.05
    ) as queue:
        ids = queue.put_many(range(6))
        slow = functools.partial(flaky, str(out), 0.4, fail_rate=0.0)
        with Consumer(queue, slow, max_workers=2, max_handlers=3, messages_bulk_size=3):
            wait_until(lambda: settled(queue), timeout=90, message=f"{queue.stats()}")
        assert successes(out) == Counter(ids)
        assert queue.cleaned == Counter(ids)
        assert queue.stale == 0
        assert queue._heartbeat is not None and queue._heartbeat.extensions > 0
