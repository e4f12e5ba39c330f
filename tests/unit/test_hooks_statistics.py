"""What users see of a running consumer: statistics snapshots and hooks."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import core_handlers
import pytest
from fakes import RecordingQueue

from queue_consumer import Consumer, ConsumerHooks, Statistics
from queue_consumer.testing import wait_until


class Recorder(ConsumerHooks):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.errors: list[str] = []

    def on_received(self, messages: Sequence[Any]) -> None:
        with self.lock:
            self.received += len(messages)

    def on_chunk_started(self, chunk: Sequence[Any]) -> None:
        with self.lock:
            self.started += len(chunk)

    def on_chunk_finished(
        self, succeeded: Sequence[Any], failed: Sequence[Any], error: str | None, duration: float
    ) -> None:
        assert duration >= 0
        with self.lock:
            self.succeeded += len(succeeded)
            self.failed += len(failed)
            if error:
                self.errors.append(error)


class Broken(ConsumerHooks):
    def on_chunk_finished(self, *args: Any) -> None:
        raise RuntimeError("a bug in a metrics exporter")


def test_statistics_and_hooks_agree_and_a_broken_hook_breaks_nothing() -> None:
    queue = RecordingQueue(reject_delay=600)
    queue.put_many([f"ok{i}" for i in range(30)] + [f"fail{i}" for i in range(5)])
    recorder = Recorder()
    consumer = Consumer(
        queue,
        core_handlers.fail_on_body,
        max_workers=2,
        max_handlers=2,
        hooks=[Broken(), recorder],
    )
    with consumer:
        wait_until(lambda: consumer.statistics().succeeded == 30)
        wait_until(lambda: consumer.statistics().failed == 5)
    stats = consumer.statistics()
    assert (stats.received, stats.started, stats.in_flight) == (35, 35, 0)
    assert stats.get_calls >= 4 and stats.errors == 0
    assert (recorder.received, recorder.started) == (35, 35)
    assert (recorder.succeeded, recorder.failed) == (30, 5)
    assert len(recorder.errors) == 5 and all("RuntimeError" in e for e in recorder.errors)


def test_statistics_is_an_immutable_snapshot() -> None:
    consumer = Consumer(RecordingQueue(), core_handlers.noop)
    snapshot = consumer.statistics()
    assert isinstance(snapshot, Statistics)
    assert snapshot == Statistics(
        workers_total=snapshot.workers_total, handlers_total=snapshot.handlers_total
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.received = 1  # type: ignore[misc]


def test_in_flight_counts_fetched_unsettled_messages() -> None:
    queue = RecordingQueue(max_messages=3)
    queue.put_many(range(3))
    gate = threading.Event()

    def handler(messages: Any) -> None:
        for _ in messages:
            gate.wait(30)

    consumer = Consumer(queue, handler, max_workers=1, max_handlers=1, messages_bulk_size=3)
    consumer.start()
    try:
        wait_until(lambda: consumer.statistics().started == 3)
        assert consumer.statistics().in_flight == 3
    finally:
        gate.set()
        consumer.shutdown()
    assert consumer.statistics().in_flight == 0
