"""The conveyor rule: what the handler took before it failed succeeded; the rest failed."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import core_handlers
from fakes import GroupedQueue, RecordingQueue

from queue_consumer import Consumer, MemoryMessage, MemoryQueue
from queue_consumer.testing import wait_until


def consume(queue: Any, handler: Any, thread_mode: bool, settled: int, **kwargs: Any) -> Consumer:
    """Run a consumer until ``settled`` messages succeeded or failed; return it stopped."""
    kwargs.setdefault("max_workers", 1)
    kwargs.setdefault("max_handlers", 2)
    consumer = Consumer(queue, handler, with_thread_executor=thread_mode, **kwargs)
    with consumer:
        wait_until(
            lambda: consumer.statistics().succeeded + consumer.statistics().failed >= settled,
            timeout=30,
        )
    return consumer


def test_failure_mid_chunk_splits_at_the_message_in_hand(thread_mode: bool) -> None:
    queue = RecordingQueue(reject_delay=600)  # rejected messages do not come back here
    queue.put_many(["ok0", "ok1", "fail2", "ok3", "ok4"])
    consumer = consume(queue, core_handlers.fail_on_body, thread_mode, 5, messages_bulk_size=5)
    # Only the message in hand failed; those after it were never tried: released (no
    # attempt spent, so one poison message cannot dead-letter its chunk-mates), then
    # handled on their next delivery.
    assert queue.rejected == {"fail2": 1}
    assert queue.released == {"ok3": 1, "ok4": 1}
    assert queue.cleaned == {"ok0": 1, "ok1": 1, "ok3": 1, "ok4": 1}
    assert queue.calls[:3] == [
        ("cleaned", ["ok0", "ok1"]),
        ("rejected", ["fail2"]),
        ("released", ["ok3", "ok4"]),
    ]
    stats = consumer.statistics()
    assert (stats.succeeded, stats.failed, stats.released, stats.in_flight) == (4, 1, 2, 0)
    assert stats.handler_errors == 1
    assert stats.last_error is not None and "cannot handle fail2" in stats.last_error


def test_messages_never_taken_by_a_handler_that_returns_failed(thread_mode: bool) -> None:
    queue = RecordingQueue(reject_delay=600)
    queue.put_many(["a", "b", "c", "d", "e"])
    consume(queue, core_handlers.take_two_then_return, thread_mode, 5, messages_bulk_size=5)
    assert queue.cleaned == {"a": 1, "b": 1}
    assert queue.rejected == {"c": 1, "d": 1, "e": 1}


def test_partial_failure_names_exactly_the_failed_messages(thread_mode: bool) -> None:
    queue = RecordingQueue(reject_delay=600)
    queue.put_many(range(6))
    consume(queue, core_handlers.fail_odd_bulk, thread_mode, 6, messages_bulk_size=6)
    assert set(queue.cleaned) == {0, 2, 4}
    assert set(queue.rejected) == {1, 3, 5}


def test_a_handler_that_reads_everything_then_fails_loses_only_the_last_guarded_one() -> None:
    """The seed's 'wrong' handler: list() takes all, so all but the last count as done."""
    queue = RecordingQueue(reject_delay=600)
    queue.put_many(range(4))

    def wrong(messages: Iterator[MemoryMessage]) -> None:
        list(messages)
        raise RuntimeError("bulk insert failed")

    consume(queue, wrong, True, 4, messages_bulk_size=4)
    assert set(queue.cleaned) == {0, 1, 2} and set(queue.rejected) == {3}


def test_chunks_never_exceed_the_bulk_size() -> None:
    queue = RecordingQueue()
    queue.put_many(range(95))
    sizes: list[int] = []
    lock = threading.Lock()

    def handler(messages: Iterator[MemoryMessage]) -> None:
        n = sum(1 for _ in messages)
        with lock:
            sizes.append(n)

    consume(queue, handler, True, 95, messages_bulk_size=3, max_workers=2, max_handlers=4)
    assert sum(sizes) == 95 and max(sizes) == 3
    assert sum(queue.cleaned.values()) == 95 and len(queue) == 0


def test_without_reject_failed_messages_come_back_after_the_visibility_timeout() -> None:
    inner = MemoryQueue(visibility_timeout=0.3)
    inner.put_many(range(10))

    class NoRejectQueue:
        get = inner.get
        cleanup = inner.cleanup

    attempts: dict[int, int] = defaultdict(int)
    lock = threading.Lock()

    def fail_first_time(messages: Iterator[MemoryMessage]) -> None:
        for message in messages:
            with lock:
                attempts[message.body] += 1
                if attempts[message.body] == 1:
                    raise RuntimeError("first try fails")

    consumer = Consumer(NoRejectQueue(), fail_first_time, max_workers=1, max_handlers=2)
    with consumer:
        wait_until(lambda: len(inner) == 0, timeout=30, message="failed messages redelivered")
    assert all(count == 2 for count in attempts.values()) and len(attempts) == 10
    assert consumer.statistics().failed == 10 and inner.deleted == 10


def test_message_groups_run_in_order_and_a_failure_holds_back_the_group() -> None:
    queue = GroupedQueue(reject_delay=600)
    bodies = [(group, n) for n in range(3) for group in "ABC"]  # interleaved groups
    queue.put_many(bodies)
    order: dict[str, list[int]] = defaultdict(list)
    running: set[str] = set()
    overlaps: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(2, timeout=10)

    def handler(messages: Iterator[MemoryMessage]) -> None:
        for message in messages:
            group, n = message.body
            with lock:
                if group in running:
                    overlaps.append(group)
                running.add(group)
                order[group].append(n)
            if (group, n) in (("B", 0), ("C", 0)):
                gate.wait()  # B and C run at the same time: different groups in parallel
            with lock:
                running.discard(group)
            if (group, n) == ("A", 1):
                raise RuntimeError("A1 fails")

    consume(queue, handler, True, 8, max_workers=1, max_handlers=3)
    assert not overlaps
    assert order["B"] == [0, 1, 2] and order["C"] == [0, 1, 2]
    assert order["A"] == [0, 1]  # A2 was held back, never handled
    assert queue.rejected == {("A", 1): 1}
    assert queue.released == {("A", 2): 1}
    assert sum(queue.cleaned.values()) == 7


def test_a_reject_that_takes_error_gets_the_handlers_traceback(thread_mode: bool) -> None:
    class ErrorKeepingQueue(RecordingQueue):
        def __init__(self) -> None:
            super().__init__(reject_delay=600)
            self.errors: list[str | None] = []

        def reject(  # type: ignore[override]
            self, messages: list[MemoryMessage], *, error: str | None = None
        ) -> None:
            self.errors.append(error)
            super().reject(messages)

    queue = ErrorKeepingQueue()
    queue.put_many(["ok", "fail-me"])
    consume(queue, core_handlers.fail_on_body, thread_mode, 2, messages_bulk_size=2)
    assert queue.rejected == {"fail-me": 1}
    (error,) = queue.errors
    assert error is not None and "RuntimeError: cannot handle fail-me" in error
