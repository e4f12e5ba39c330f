"""What users see of a running consumer: statistics snapshots and hooks."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Iterator, Sequence
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
        self.gets = 0
        self.settled: dict[str, int] = {}
        self.ticks = 0

    def on_get(self, count: int, duration: float, error: BaseException | None) -> None:
        with self.lock:
            self.gets += 1

    def on_settled(
        self, stage: str, messages: Sequence[Any], duration: float, error: BaseException | None
    ) -> None:
        with self.lock:
            self.settled[stage] = self.settled.get(stage, 0) + len(messages)

    def on_supervise(self, statistics: Statistics) -> None:
        with self.lock:
            self.ticks += 1

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


def test_statistics_and_hooks_agree_and_a_broken_hook_breaks_nothing(thread_mode: bool) -> None:
    queue = RecordingQueue(reject_delay=600)
    queue.put_many([f"ok{i}" for i in range(30)] + [f"fail{i}" for i in range(5)])
    recorder = Recorder()
    consumer = Consumer(
        queue,
        core_handlers.fail_on_body,
        max_workers=2,
        max_handlers=2,
        hooks=[Broken(), recorder],
        with_thread_executor=thread_mode,
    )
    with consumer:
        consumer.supervise(polling_time=0.05)
        wait_until(lambda: consumer.statistics().succeeded == 30, timeout=30)
        wait_until(lambda: consumer.statistics().failed == 5)
        wait_until(lambda: recorder.ticks >= 2)
    stats = consumer.statistics()
    assert (stats.received, stats.started, stats.in_flight) == (35, 35, 0)
    assert stats.get_calls >= 4 and stats.errors == 0 and stats.handler_errors == 5
    assert stats.supervised_at is not None and stats.last_settled_at is not None
    assert (recorder.received, recorder.started) == (35, 35)
    assert (recorder.succeeded, recorder.failed) == (30, 5)
    assert len(recorder.errors) == 5 and all("RuntimeError" in e for e in recorder.errors)
    assert recorder.gets == stats.get_calls
    assert recorder.settled["cleanup"] == 30 and recorder.settled["reject"] == 5


class Context(ConsumerHooks):
    """A tracing-like hook: a context around each handler, carried into the child."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entered = 0

    @contextlib.contextmanager
    def handler_context(self, chunk: Sequence[Any]) -> Iterator[Any]:
        self.entered += 1
        with core_handlers.tagged(f"chunk-{chunk[0].body}"):
            yield functools.partial(core_handlers.tagged, f"chunk-{chunk[0].body}")


def test_handler_context_surrounds_the_handler_in_threads_and_processes(
    thread_mode: bool, tmp_path: Any
) -> None:
    out = tmp_path / "tags"
    queue = RecordingQueue()
    queue.put_many(range(4))
    hook = Context(str(out))
    consumer = Consumer(
        queue,
        functools.partial(core_handlers.write_tag, str(out)),
        max_workers=1,
        max_handlers=1,  # the tag lives in os.environ: one handler thread at a time
        hooks=[hook],
        with_thread_executor=thread_mode,
    )
    with consumer:
        wait_until(lambda: consumer.statistics().succeeded == 4, timeout=30)
    lines = sorted(out.read_text().split())
    assert lines == [f"{n}:chunk-{n}" for n in range(4)]
    assert hook.entered == 4


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
