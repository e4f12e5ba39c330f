"""Supervision: get() errors back off and retry, dead workers come back, stuck handlers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import core_handlers
import pytest
from fakes import RecordingQueue

from queue_consumer import (
    ConfigurationError,
    Consumer,
    ConsumerStateError,
    MemoryMessage,
    MemoryQueue,
    StuckHandlersError,
)
from queue_consumer.testing import wait_until


class FlakyQueue(RecordingQueue):
    """get() raises the first ``failures`` times."""

    def __init__(self, failures: int, error: BaseException) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.lock = threading.Lock()

    def get(self) -> list[MemoryMessage]:
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise self.error
        return super().get()


def test_get_errors_are_counted_and_retried_and_the_worker_lives_on() -> None:
    queue = FlakyQueue(3, ConnectionError("broker down"))
    queue.put_many(range(10))
    consumer = Consumer(queue, core_handlers.noop, max_workers=1, max_handlers=2)
    with consumer:
        wait_until(lambda: len(queue) == 0, timeout=30, message="consumed after get() recovered")
    stats = consumer.statistics()
    assert stats.errors == 3 and stats.workers_revived == 0
    assert stats.last_error is not None and "broker down" in stats.last_error


class WorkerKiller(BaseException):
    """Not an Exception: escapes the worker's error handling and ends the thread."""


def test_supervise_revives_a_dead_worker() -> None:
    queue = FlakyQueue(1, WorkerKiller())
    queue.put_many(range(10))
    consumer = Consumer(queue, core_handlers.noop, max_workers=1, max_handlers=1)
    consumer.start()
    consumer.supervise(polling_time=0.05)
    wait_until(lambda: len(queue) == 0, timeout=30, message="revived worker consumed")
    consumer.shutdown()
    assert consumer.statistics().workers_revived == 1


def test_supervise_needs_a_started_consumer_and_a_positive_polling_time() -> None:
    consumer = Consumer(MemoryQueue(), core_handlers.noop)
    with pytest.raises(ConsumerStateError, match="not started"):
        consumer.supervise()
    consumer.start()
    try:
        with pytest.raises(ConfigurationError, match="polling_time"):
            consumer.supervise(polling_time=0)
    finally:
        consumer.shutdown()


def stuck_consumer(max_stuck: int, gate: threading.Event) -> tuple[Consumer, RecordingQueue]:
    queue = RecordingQueue(max_messages=1)
    queue.put_many(["a", "b"])

    def handler(messages: Iterator[MemoryMessage]) -> None:
        for _ in messages:
            gate.wait(30)

    consumer = Consumer(
        queue,
        handler,
        max_workers=1,
        max_handlers=2,
        handler_timeout=0.2,
        max_stuck_handlers=max_stuck,
    )
    consumer.start()
    wait_until(lambda: consumer.statistics().started == 2)
    return consumer, queue


def test_too_many_stuck_thread_handlers_raise_from_blocking_supervise() -> None:
    gate = threading.Event()
    consumer, queue = stuck_consumer(1, gate)
    try:
        with pytest.raises(StuckHandlersError, match="2 handler"):
            consumer.supervise(blocking=True, polling_time=0.05)  # not the main thread: no signals
        assert consumer.statistics().handlers_stuck == 2
        # Shut down at once; the timed-out messages failed (an attempt spent, so a message
        # that hangs its handler every time reaches the dead letters, not a crash loop).
        assert sum(queue.rejected.values()) == 2 and not queue.released
    finally:
        gate.set()


def test_stuck_handlers_within_the_allowance_are_counted_not_fatal() -> None:
    gate = threading.Event()
    consumer, _ = stuck_consumer(2, gate)
    consumer.supervise(polling_time=0.05)
    wait_until(lambda: consumer.statistics().handlers_stuck == 2)
    assert consumer.join(timeout=0) is False  # still running
    gate.set()
    consumer.shutdown()


def test_background_supervise_stops_the_consumer_and_join_raises() -> None:
    gate = threading.Event()
    consumer, _ = stuck_consumer(0, gate)
    consumer.supervise(polling_time=0.05)
    try:
        with pytest.raises(StuckHandlersError):
            consumer.join(timeout=30)
    finally:
        gate.set()
