"""Shutdown: stop fetching, drain running handlers, release the rest; idempotent; no restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import core_handlers
import pytest
from fakes import RecordingQueue

from queue_consumer import Consumer, ConsumerStateError, MemoryMessage, MemoryQueue, State
from queue_consumer.testing import wait_until


def blocking_handler() -> tuple[threading.Event, threading.Semaphore, object]:
    gate = threading.Event()
    started = threading.Semaphore(0)

    def handler(messages: Iterator[MemoryMessage]) -> None:
        for _ in messages:
            started.release()
            gate.wait(30)

    return gate, started, handler


def test_running_handlers_finish_and_are_cleaned_up_before_shutdown_returns() -> None:
    queue = RecordingQueue(max_messages=1)
    queue.put_many(range(10))
    gate, started, handler = blocking_handler()
    consumer = Consumer(queue, handler, max_workers=2, max_handlers=2)
    consumer.start()
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    stopper = threading.Thread(target=consumer.shutdown)
    stopper.start()
    wait_until(lambda: consumer.state is State.STOPPING)
    assert stopper.is_alive()  # waiting for the two running handlers
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive() and consumer.state is State.STOPPED
    stats = consumer.statistics()
    assert stats.succeeded == 2 and stats.in_flight == 0
    assert sum(queue.cleaned.values()) == 2
    assert len(queue) == 8 and queue.stats()["in_flight"] == 0  # the rest were never fetched


def test_fetched_but_unstarted_messages_are_released() -> None:
    queue = RecordingQueue(max_messages=5)
    queue.put_many(range(5))
    gate, started, handler = blocking_handler()
    consumer = Consumer(queue, handler, max_workers=1, max_handlers=1)
    consumer.start()
    assert started.acquire(timeout=10)  # one running; four fetched, waiting for a slot
    threading.Timer(0.2, gate.set).start()
    consumer.shutdown()
    assert sum(queue.cleaned.values()) == 1
    assert sum(queue.released.values()) == 4
    stats = consumer.statistics()
    assert (stats.succeeded, stats.released, stats.in_flight) == (1, 4, 0)
    assert queue.stats()["visible"] == 4  # back in the queue at once


def test_release_falls_back_to_reject() -> None:
    inner = MemoryQueue()
    inner.put_many(range(3))
    rejected: list[int] = []

    class RejectOnly:
        get = inner.get
        cleanup = inner.cleanup

        def reject(self, messages: list[MemoryMessage]) -> None:
            rejected.extend(m.body for m in messages)

    gate, started, handler = blocking_handler()
    consumer = Consumer(RejectOnly(), handler, max_workers=1, max_handlers=1)
    consumer.start()
    assert started.acquire(timeout=10)
    threading.Timer(0.2, gate.set).start()
    consumer.shutdown()
    assert sorted(rejected) == [1, 2]


def test_past_the_timeout_a_stuck_thread_handler_is_abandoned_and_released() -> None:
    queue = RecordingQueue(max_messages=1)
    queue.put_many(["stuck"])
    gate, started, handler = blocking_handler()
    consumer = Consumer(queue, handler, max_workers=1, max_handlers=1)
    consumer.start()
    assert started.acquire(timeout=10)
    began = time.monotonic()
    consumer.shutdown(timeout=0.3)
    assert time.monotonic() - began < 5
    assert queue.released == {"stuck": 1} and not queue.cleaned
    gate.set()  # the abandoned handler finishes later: its outcome is ignored
    wait_until(
        lambda: not any(t.name.startswith("queue_consumer-handler") for t in threading.enumerate()),
        timeout=10,
    )
    assert not queue.cleaned and consumer.statistics().in_flight == 0


def test_past_the_timeout_a_handler_process_is_killed_and_released() -> None:
    queue = RecordingQueue(max_messages=1)
    queue.put_many([60])  # sleeps a minute
    consumer = Consumer(
        queue,
        core_handlers.sleep_on_body,
        max_workers=1,
        max_handlers=1,
        with_thread_executor=False,
    )
    consumer.start()
    wait_until(lambda: consumer.statistics().started == 1, timeout=30)
    began = time.monotonic()
    consumer.shutdown(timeout=0.5)
    assert time.monotonic() - began < 10
    assert queue.released == {60: 1} and not queue.cleaned and not queue.rejected


def test_shutdown_timeout_parameter_is_the_default_deadline() -> None:
    queue = RecordingQueue(max_messages=1)
    queue.put_many(["stuck"])
    gate, started, handler = blocking_handler()
    consumer = Consumer(queue, handler, max_workers=1, max_handlers=1, shutdown_timeout=0.2)
    consumer.start()
    assert started.acquire(timeout=10)
    consumer.shutdown()
    gate.set()
    assert queue.released == {"stuck": 1}


def test_shutdown_is_idempotent_and_safe_from_two_threads() -> None:
    queue = RecordingQueue()
    queue.put_many(range(50))
    consumer = Consumer(queue, core_handlers.noop, max_workers=2, max_handlers=2)
    consumer.start()
    threads = [threading.Thread(target=consumer.shutdown) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    consumer.shutdown()
    assert consumer.state is State.STOPPED and consumer.join(timeout=0)
    assert consumer.statistics().in_flight == 0


def test_lifecycle_errors_are_precise() -> None:
    consumer = Consumer(MemoryQueue(), core_handlers.noop, max_workers=1, max_handlers=1)
    consumer.start()
    with pytest.raises(ConsumerStateError, match="once it has been started"):
        consumer.start()
    consumer.shutdown()
    with pytest.raises(ConsumerStateError, match="create a new Consumer"):
        consumer.start()
    never_started = Consumer(MemoryQueue(), core_handlers.noop)
    never_started.shutdown()
    assert never_started.state is State.STOPPED
    with pytest.raises(ConsumerStateError):
        never_started.start()


def test_context_manager_starts_and_shuts_down() -> None:
    queue = RecordingQueue()
    queue.put_many(range(5))
    with Consumer(queue, core_handlers.noop, max_workers=1, max_handlers=1) as consumer:
        assert consumer.state is State.RUNNING
        wait_until(lambda: len(queue) == 0)
    assert consumer.state is State.STOPPED
    assert not any(t.name.startswith("queue_consumer-worker") for t in threading.enumerate())
