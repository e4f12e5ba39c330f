"""Settles go out in batches across chunks (issue 11), bounded, never before success."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import core_handlers
from fakes import GetOnlyQueue, GroupedQueue, RecordingQueue

from queue_consumer import Consumer, ConsumerHooks
from queue_consumer.testing import wait_until


def drain(queue: Any, handler: Any, count: int, **kwargs: Any) -> Consumer:
    kwargs.setdefault("max_workers", 2)
    kwargs.setdefault("max_handlers", 4)
    consumer = Consumer(queue, handler, **kwargs)
    with consumer:
        wait_until(lambda: consumer.statistics().succeeded >= count, timeout=30)
    return consumer


def test_bulk_one_makes_about_as_few_cleanup_calls_as_bulk_ten(thread_mode: bool) -> None:
    queue = RecordingQueue(max_messages=10)
    queue.put_many(range(200))
    consumer = drain(queue, core_handlers.noop, 200, with_thread_executor=thread_mode)
    cleanups = [bodies for kind, bodies in queue.calls if kind == "cleaned"]
    assert sorted(b for bodies in cleanups for b in bodies) == list(range(200))
    assert max(len(bodies) for bodies in cleanups) <= 10, "never more than one get() returned"
    assert len(cleanups) <= 60, f"{len(cleanups)} cleanup calls for 200 one-message chunks"
    assert consumer.statistics().settles_pending == 0


def test_settle_delay_zero_settles_every_chunk_at_once() -> None:
    queue = RecordingQueue(max_messages=10)
    queue.put_many(range(20))
    drain(queue, core_handlers.noop, 20, settle_delay=0)
    cleanups = [bodies for kind, bodies in queue.calls if kind == "cleaned"]
    assert len(cleanups) == 20


def test_a_lone_success_waits_at_most_the_settle_delay() -> None:
    """All slots busy with a long handler: the short one's cleanup goes out on the timer."""
    gate = threading.Event()

    def handler(messages: Iterator[Any]) -> None:
        for message in messages:
            if message.body == "slow":
                gate.wait(30)

    queue = RecordingQueue(max_messages=2)
    queue.put_many(["slow", "fast"])
    consumer = Consumer(queue, handler, max_workers=1, max_handlers=2, settle_delay=0.2)
    with consumer:
        wait_until(lambda: queue.cleaned == {"fast": 1}, timeout=10)
        assert consumer.statistics().handlers_busy == 1
        gate.set()
        wait_until(lambda: queue.cleaned == {"fast": 1, "slow": 1}, timeout=10)


def test_pending_settles_are_flushed_at_shutdown_and_visible_meanwhile() -> None:
    seen: list[int] = []

    class Watch(ConsumerHooks):
        def on_chunk_finished(self, succeeded: Any, failed: Any, error: Any, duration: float):  # type: ignore[no-untyped-def]
            seen.append(consumer.statistics().settles_pending)

    queue = RecordingQueue(max_messages=10)
    queue.put_many(range(10))
    consumer = Consumer(
        queue, core_handlers.noop, max_workers=1, max_handlers=1, settle_delay=5, hooks=[Watch()]
    )
    with consumer:
        wait_until(lambda: len(seen) == 10, timeout=10)
    assert queue.cleaned == dict.fromkeys(range(10), 1)
    assert consumer.statistics().succeeded == 10 and consumer.statistics().in_flight == 0
    assert max(seen) >= 1


def test_a_fifo_group_settles_each_chunk_before_its_next_one_runs() -> None:
    order: list[tuple[str, Any]] = []

    class Recording(GroupedQueue):
        def cleanup(self, messages: Any) -> None:
            order.extend(("cleanup", m.body) for m in messages)
            super().cleanup(messages)

    def handler(messages: Iterator[Any]) -> None:
        for message in messages:
            order.append(("handle", message.body))

    queue = Recording()
    queue.put_many([("g", 1), ("g", 2), ("g", 3)])
    drain(queue, handler, 3, max_workers=1, max_handlers=1)
    assert order == [
        ("handle", ("g", 1)),
        ("cleanup", ("g", 1)),
        ("handle", ("g", 2)),
        ("cleanup", ("g", 2)),
        ("handle", ("g", 3)),
        ("cleanup", ("g", 3)),
    ]


def test_a_queue_with_get_and_cleanup_only() -> None:
    cleaned: list[Any] = []

    class SeedQueue(GetOnlyQueue):
        def cleanup(self, messages: list[Any]) -> None:
            cleaned.extend(messages)

    queue = SeedQueue(range(50))
    consumer = Consumer(queue, core_handlers.noop, max_workers=1, max_handlers=2)
    with consumer:
        wait_until(lambda: consumer.statistics().succeeded == 50, timeout=10)
    assert sorted(cleaned) == list(range(50))
