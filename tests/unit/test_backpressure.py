"""Back-pressure: a worker fetches only when a handler slot is free for what it fetches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from fakes import RecordingQueue

from queue_consumer import Consumer, MemoryMessage
from queue_consumer.testing import wait_until


class ObservedQueue(RecordingQueue):
    """Records how many handlers were running each time get() was called."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.running = 0
        self.peak = 0
        self.running_at_get: list[int] = []
        self.lock = threading.Lock()

    def get(self) -> list[MemoryMessage]:
        with self.lock:
            self.running_at_get.append(self.running)
        return super().get()

    def handler(self, messages: Iterator[MemoryMessage]) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            for _ in messages:
                time.sleep(0.001)  # simulated work, not synchronisation
        finally:
            with self.lock:
                self.running -= 1


def test_get_is_called_only_when_a_handler_slot_is_free() -> None:
    queue = ObservedQueue(max_messages=1)
    queue.put_many(range(300))
    consumer = Consumer(queue, max_workers=6, max_handlers=3)
    with consumer:
        wait_until(lambda: len(queue) == 0, timeout=60)
    assert queue.peak <= 3
    # The caller of get() holds one of the 3 slots, so at most 2 handlers can be running.
    assert max(queue.running_at_get) <= 2
    assert consumer.statistics().succeeded == 300


def test_a_batch_waits_for_slots_instead_of_queueing_in_memory() -> None:
    """get() returns 10 with bulk 1 and 2 slots: never more than 2 handlers at once."""
    queue = ObservedQueue(max_messages=10)
    queue.put_many(range(200))
    consumer = Consumer(queue, max_workers=3, max_handlers=2)
    with consumer:
        wait_until(lambda: len(queue) == 0, timeout=60)
    assert queue.peak <= 2
    assert sum(queue.cleaned.values()) == 200


def test_blocked_handlers_stop_all_fetching() -> None:
    queue = RecordingQueue(max_messages=1)
    queue.put_many(range(20))
    gate = threading.Event()
    started = threading.Semaphore(0)

    def handler(messages: Iterator[MemoryMessage]) -> None:
        for _ in messages:
            started.release()
            gate.wait(30)

    consumer = Consumer(queue, handler, max_workers=4, max_handlers=2)
    consumer.start()
    try:
        assert started.acquire(timeout=10) and started.acquire(timeout=10)
        # Both slots are busy: the four workers wait for a slot instead of fetching more.
        assert consumer.statistics().received == 2
    finally:
        gate.set()
        consumer.shutdown()
    assert sum(queue.cleaned.values()) >= 2
