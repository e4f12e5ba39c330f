"""What a new user hit (issue 8), in the core: each test fails on the code before the fix."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import core_handlers
import pytest
from fakes import RecordingQueue

from queue_consumer import Consumer, ConsumerHooks, MemoryMessage
from queue_consumer.errors import ConfigurationError
from queue_consumer.testing import wait_until


async def async_handler(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


class GeneratorCall:
    def __call__(self, messages: Iterator[Any]) -> Iterator[Any]:
        yield from messages


@pytest.mark.parametrize(
    ("handler", "kind"),
    [
        (core_handlers.generator_handler, "generator function"),
        (async_handler, "coroutine"),
        (GeneratorCall(), "generator function"),
    ],
)
def test_a_handler_that_cannot_take_messages_is_refused_at_construction(
    handler: Any, kind: str
) -> None:
    with pytest.raises(ConfigurationError, match=kind):
        Consumer(RecordingQueue(), handler)
    assert asyncio.iscoroutinefunction(async_handler)


def test_a_handler_that_returns_early_fails_the_rest_counts_and_logs_once(
    thread_mode: bool, caplog: pytest.LogCaptureFixture
) -> None:
    queue = RecordingQueue(reject_delay=600)
    queue.put_many(range(30))
    caplog.set_level(logging.WARNING, logger="queue_consumer.worker")
    consumer = Consumer(
        queue,
        core_handlers.take_two_then_return,
        max_workers=1,
        max_handlers=2,
        messages_bulk_size=5,
        with_thread_executor=thread_mode,
    )
    with consumer:
        wait_until(lambda: consumer.statistics().failed == 18, timeout=30)
    stats = consumer.statistics()
    assert (stats.succeeded, stats.failed, stats.handler_errors) == (12, 18, 6)
    assert sum(queue.rejected.values()) == 18  # an attempt spent: it cannot loop for ever
    warnings = [r for r in caplog.records if "without taking 3 of its 5" in r.getMessage()]
    assert len(warnings) == 1, "one warning per cause, not per chunk"
    assert "more like it" not in warnings[0].getMessage()


class DeadLetterQueue(RecordingQueue):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dead: list[tuple[Any, str | None]] = []

    def dead_letter(self, messages: list[MemoryMessage], *, error: str | None = None) -> None:
        self.dead.extend((m.body, error) for m in messages)
        MemoryQueue_cleanup(self, messages)


def MemoryQueue_cleanup(queue: RecordingQueue, messages: list[MemoryMessage]) -> None:
    from queue_consumer import MemoryQueue

    MemoryQueue.cleanup(queue, messages)


def test_permanent_failure_sends_the_message_in_hand_to_the_dead_letters(
    thread_mode: bool,
) -> None:
    queue = DeadLetterQueue(reject_delay=600)
    queue.put_many(["ok0", "poison1", "ok2"])
    consumer = Consumer(
        queue,
        core_handlers.permanent_on_body,
        max_workers=1,
        max_handlers=1,
        messages_bulk_size=3,
        with_thread_executor=thread_mode,
    )
    with consumer:
        wait_until(lambda: consumer.statistics().succeeded == 2, timeout=30)
    assert [body for body, _ in queue.dead] == ["poison1"]
    assert "poison1 can never succeed" in (queue.dead[0][1] or "")
    assert not queue.rejected
    assert queue.released == {"ok2": 1}  # never tried: released, then handled
    assert consumer.statistics().dead_lettered == 1


def test_permanent_failure_is_rejected_where_the_queue_has_no_dead_letters() -> None:
    queue = RecordingQueue(reject_delay=600)
    queue.put_many(["poison"])
    consumer = Consumer(queue, core_handlers.permanent_on_body, max_workers=1, max_handlers=1)
    with consumer:
        wait_until(lambda: consumer.statistics().failed == 1, timeout=30)
    assert queue.rejected == {"poison": 1}


def test_hooks_that_are_not_hooks_are_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="ConsumerHooks"):
        Consumer(RecordingQueue(), core_handlers.noop, hooks=[object()])  # type: ignore[list-item]
    Consumer(RecordingQueue(), core_handlers.noop, hooks=[ConsumerHooks()])


def test_a_failing_pool_initializer_fails_the_chunk_then_is_retried(
    thread_mode: bool, tmp_path: Any
) -> None:
    marker = tmp_path / "fail-once"
    marker.touch()
    queue = RecordingQueue(reject_delay=0.05)
    queue.put_many(["x"])
    consumer = Consumer(
        queue,
        core_handlers.noop,
        max_workers=1,
        max_handlers=1,
        pool_initializer=functools.partial(core_handlers.flaky_initializer, str(marker)),
        with_thread_executor=thread_mode,
    )
    with consumer:
        wait_until(lambda: consumer.statistics().succeeded == 1, timeout=30)
    stats = consumer.statistics()
    assert stats.failed == 1 and queue.rejected == {"x": 1}
    assert stats.last_error is not None and "initializer failed the first time" in stats.last_error


class InterruptibleQueue(RecordingQueue):
    """get() waits like a long poll until interrupt()."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = threading.Event()
        self.waiting = threading.Event()

    def get(self) -> list[MemoryMessage]:
        self.waiting.set()
        self.interrupted.wait(60)
        return []

    def interrupt(self) -> None:
        self.interrupted.set()


def test_shutdown_interrupts_a_waiting_get() -> None:
    queue = InterruptibleQueue()
    consumer = Consumer(queue, core_handlers.noop, max_workers=1, max_handlers=1)
    consumer.start()
    assert queue.waiting.wait(10)
    assert consumer.statistics().in_get_for >= 0
    done = threading.Event()
    threading.Thread(target=lambda: (consumer.shutdown(), done.set())).start()
    assert done.wait(10), "shutdown waited for the get() instead of interrupting it"
    assert queue.interrupted.is_set()
