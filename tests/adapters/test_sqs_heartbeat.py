"""The visibility heartbeat: slow handlers keep their messages, fast ones cost nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from queue_consumer.adapters.sqs import SQSQueue
from queue_consumer.adapters.sqs._heartbeat import ExtendResult, Heartbeat
from queue_consumer.testing import wait_until

MakeQueue = Callable[..., str]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self, invalid: set[str] | None = None) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.invalid = invalid or set()

    def __call__(self, entries: list[tuple[str, int]]) -> ExtendResult:
        self.calls.append(entries)
        handles = [handle for handle, _ in entries]
        return ExtendResult(
            extended=[h for h in handles if h not in self.invalid],
            invalid=[h for h in handles if h in self.invalid],
        )


def make(recorder: Recorder, clock: FakeClock, timeout: int = 30) -> Heartbeat:
    # enabled=False: no thread, the test drives beat() itself.
    return Heartbeat(recorder, timeout, 0.5, enabled=False, clock=clock)


def test_extends_only_messages_held_past_the_fraction() -> None:
    clock, recorder = FakeClock(), Recorder()
    beat = make(recorder, clock)
    beat.track(["a"])
    clock.now += 10
    beat.track(["b"])
    beat.beat()
    assert recorder.calls == []  # nobody held 15 s yet: no traffic
    clock.now += 5
    beat.beat()
    assert recorder.calls == [[("a", 30)]]
    clock.now += 10
    beat.beat()  # b is due now (held 15 s), a was extended 10 s ago
    assert recorder.calls[-1] == [("b", 30)]
    assert beat.extensions == 2


def test_untracked_messages_are_not_extended() -> None:
    clock, recorder = FakeClock(), Recorder()
    beat = make(recorder, clock)
    beat.track(["a", "b"])
    received = beat.untrack(["a", "unknown"])
    assert received == {"a": 1000.0}
    clock.now += 20
    beat.beat()
    assert recorder.calls == [[("b", 30)]]
    assert beat.held() == 1


def test_invalid_receipts_are_dropped() -> None:
    clock, recorder = FakeClock(), Recorder(invalid={"gone"})
    beat = make(recorder, clock)
    beat.track(["gone", "kept"])
    clock.now += 20
    beat.beat()
    assert beat.held() == 1
    clock.now += 20
    beat.beat()
    assert recorder.calls[-1] == [("kept", 30)]


def test_never_beyond_twelve_hours_from_the_receive() -> None:
    clock, recorder = FakeClock(), Recorder()
    beat = make(recorder, clock, timeout=600)
    beat.track(["a"])
    clock.now += 43_200 - 60 - 100  # 100 s of room left before the limit (and its margin)
    beat.beat()
    assert recorder.calls == [[("a", 100)]]
    clock.now += 400
    beat.beat()  # no room left: dropped, not extended
    assert len(recorder.calls) == 1
    assert beat.held() == 0


def test_close_stops_the_thread() -> None:
    calls = threading.Event()

    def extend(entries: list[tuple[str, int]]) -> ExtendResult:
        calls.set()
        return ExtendResult(extended=[h for h, _ in entries], invalid=[])

    beat = Heartbeat(extend, 1, 0.2)
    beat.track(["a"])
    assert calls.wait(10)
    thread = beat._thread
    assert thread is not None and thread.daemon
    beat.close()
    beat.close()
    assert not thread.is_alive()


def test_a_failing_extension_does_not_stop_the_heartbeat() -> None:
    attempts: list[int] = []
    errors: list[BaseException] = []

    def extend(entries: list[tuple[str, int]]) -> ExtendResult:
        attempts.append(len(entries))
        if len(attempts) == 1:
            raise ConnectionError("network down")
        return ExtendResult(extended=[h for h, _ in entries], invalid=[])

    beat = Heartbeat(extend, 1, 0.2, on_error=errors.append)
    try:
        beat.track(["a"])
        wait_until(lambda: len(attempts) >= 3, timeout=20)
        assert isinstance(errors[0], ConnectionError)
        assert beat.extensions >= 2
    finally:
        beat.close()


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
