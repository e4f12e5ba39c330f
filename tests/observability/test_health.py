"""Each health state reached for real: idle, saturated, stalled, hung, unsupervised, down."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from probes import probe

from queue_consumer import Consumer, ConsumerHooks
from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.observability.health import Health, HealthHooks, check_file
from queue_consumer.observability.server import serve
from queue_consumer.testing import wait_until

WINDOW = 0.6  # stall window of these tests; sampled every 0.1 s


def _noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


class SilentQueue(SQLiteQueue):
    """A queue whose get() hands out nothing although its stats() show a backlog: the
    silent consumer of a deleted NATS consumer or a dead AMQP channel."""

    def get(self) -> list[Any]:
        time.sleep(0.01)
        return []


class HangingQueue(SQLiteQueue):
    """A queue whose get() hangs (a socket without a timeout) once ``hang`` is set."""

    hang = threading.Event()
    freed = threading.Event()

    def get(self) -> list[Any]:
        if self.hang.is_set():
            self.freed.wait(30)
        return super().get()


class Fatal(BaseException):
    """Ends the worker that raises it (not an Exception: the worker does not retry it)."""


class DyingQueue(SQLiteQueue):
    def get(self) -> list[Any]:
        raise Fatal("worker killed")


def _watch(consumer: Consumer, **options: Any) -> HealthHooks:
    options = {"stall_after": WINDOW, "stall_sample": 0.1, **options}
    return HealthHooks(**options).bind(consumer)


def _covering(health: HealthHooks, seconds: float) -> Callable[[], bool]:
    """True once the stall sampler's history spans ``seconds`` of a running consumer."""

    def covered() -> bool:
        sampler = health._sampler
        samples = [s for s in sampler.history() if s.running] if sampler else []
        return bool(samples) and samples[-1].at - samples[0].at >= seconds

    return covered


def _started(queue: Any, handler: Callable[..., Any] = _noop, **options: Any) -> Consumer:
    options = {"max_workers": 1, "max_handlers": 2, **options}
    consumer = Consumer(queue, handler, **options)
    return consumer


def test_not_ready_while_starting_then_ready(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    consumer = _started(make_sqlite())
    health = _watch(consumer)
    assert health.check() == Health(
        live=True,
        ready=False,
        stalled=False,
        reasons=("starting: the consumer was not started yet",),
    )
    consumer.start()
    try:
        wait_until(lambda: health.check().ready, timeout=10)
        assert health.check().reason == "ok"
    finally:
        consumer.shutdown()
    assert health.check().live is False


def test_an_idle_queue_stays_live_past_the_window(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    consumer = _started(make_sqlite())
    health = _watch(consumer)
    consumer.start()
    try:
        wait_until(_covering(health, 3 * WINDOW), timeout=10)
        verdict = health.check()
        assert verdict.live and not verdict.stalled, verdict
        assert verdict.ready, verdict
    finally:
        consumer.shutdown()


def test_all_slots_busy_with_long_handlers_stays_live(
    make_sqlite: Callable[..., SQLiteQueue],
) -> None:
    queue = make_sqlite()
    queue.put_many([str(i) for i in range(10)])  # a backlog, but no free slot to take it
    gate = threading.Event()

    def long_handler(messages: Iterator[Any]) -> None:
        for _ in messages:
            gate.wait(20)

    consumer = _started(queue, long_handler, handler_timeout=30)
    health = _watch(consumer)
    consumer.start()
    try:
        wait_until(lambda: consumer.statistics().started == 2, timeout=10)
        wait_until(_covering(health, 3 * WINDOW), timeout=10)
        verdict = health.check()
        assert verdict.live and not verdict.stalled, verdict
        assert verdict.ready, verdict
    finally:
        gate.set()
        consumer.shutdown()


def test_a_backlog_with_free_slots_and_nothing_received_is_stalled(
    make_sqlite: Callable[..., SQLiteQueue], caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_sqlite(SilentQueue)
    queue.put_many(["a", "b", "c"])
    consumer = _started(queue)
    health = _watch(consumer)
    consumer.start()
    try:
        with serve(consumer, port=0, health=health) as server:
            wait_until(lambda: health.check().stalled, timeout=10)
            verdict = health.check()
            assert verdict.live and not verdict.ready
            assert "stalled: 3 message(s) wait, 2 handler slot(s) free" in verdict.reason
            assert probe(server.url + "/livez")[0] == 200
            status, body = probe(server.url + "/readyz")
            assert status == 503 and body["stalled"] is True and "stalled" in body["reason"]
            if server.metrics is not None:
                from probes import scrape, value

                assert value(scrape(server.url), "queue_consumer_stalled") == 1
        assert any(
            "stalled" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
        )
        fatal = _watch(consumer, stall_is_fatal=True)
        wait_until(lambda: not fatal.check().live, timeout=10)
        assert "stalled" in fatal.check().reason
    finally:
        consumer.shutdown()


def test_not_ready_from_shutdown_on(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    queue = make_sqlite()
    queue.put("slow")
    gate = threading.Event()

    def slow(messages: Iterator[Any]) -> None:
        for _ in messages:
            gate.wait(20)

    consumer = _started(queue, slow)
    health = _watch(consumer)
    consumer.start()
    stopper = threading.Thread(target=consumer.shutdown)
    try:
        wait_until(lambda: consumer.statistics().started == 1, timeout=10)
        stopper.start()
        wait_until(lambda: consumer.state.value == "stopping", timeout=10)
        verdict = health.check()
        assert verdict.live and not verdict.ready
        assert verdict.reason == "stopping: draining handlers"
    finally:
        gate.set()
        stopper.join(20)


def test_a_hung_get_is_not_live(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    queue = make_sqlite(HangingQueue)
    consumer = _started(queue)
    health = _watch(consumer, get_stall_after=0.5)
    consumer.start()
    try:
        wait_until(lambda: health.check().ready, timeout=10)
        HangingQueue.hang.set()
        wait_until(lambda: not health.check().live, timeout=10)
        assert "hung in get()" in health.check().reason
    finally:
        HangingQueue.hang.clear()
        HangingQueue.freed.set()
        consumer.shutdown()
    HangingQueue.freed.clear()


def test_a_supervise_loop_that_stopped_ticking_is_not_live(
    make_sqlite: Callable[..., SQLiteQueue], tmp_path: Path
) -> None:
    wedged = threading.Event()
    freed = threading.Event()

    class Wedging(ConsumerHooks):
        """After a few ticks, a hook blocks the supervise loop for good."""

        ticks = 0

        def on_supervise(self, statistics: Any) -> None:
            self.ticks += 1
            if self.ticks >= 3:
                wedged.set()
                freed.wait(30)

    health_file = tmp_path / "healthy"
    health = HealthHooks(supervise_within=0.5, health_file=health_file, stall_after=None)
    consumer = Consumer(
        make_sqlite(), _noop, max_workers=1, max_handlers=1, hooks=[health, Wedging()]
    )
    health.bind(consumer)
    consumer.start()
    try:
        consumer.supervise(polling_time=0.05)
        wait_until(health_file.exists, timeout=10)
        assert check_file(health_file, max_age=5)[0]
        wait_until(wedged.is_set, timeout=10)
        wait_until(lambda: not health.check().live, timeout=10)
        assert "the supervise loop has not ticked" in health.check().reason
        wait_until(lambda: not check_file(health_file, max_age=0.5)[0], timeout=10)
    finally:
        freed.set()
        consumer.shutdown()


def test_dead_workers_not_revived_are_not_live(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    consumer = _started(make_sqlite(DyingQueue))
    health = _watch(consumer, supervise_within=0.3)
    consumer.start()  # and never supervised: nobody revives the worker
    try:
        wait_until(lambda: not health.check().live, timeout=10)
        assert "1 of 1 workers dead" in health.check().reason
    finally:
        consumer.shutdown()


def test_health_command_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "healthy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def health(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "queue_consumer", "health", "--file", str(path), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    missing = health()
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    path.touch()
    assert health("--max-age", "30").returncode == 0
    old = time.time() - 120
    os.utime(path, (old, old))
    stale = health("--max-age", "60")
    assert stale.returncode == 1 and "old" in stale.stderr


def test_consumer_health_uses_the_health_hooks_it_was_given(
    make_sqlite: Callable[..., SQLiteQueue],
) -> None:
    health = HealthHooks(stall_after=None)
    consumer = Consumer(make_sqlite(), _noop, max_workers=1, max_handlers=1, hooks=[health])
    assert consumer.health().reason == "starting: the consumer was not started yet"
    assert health.consumer is consumer  # found among the hooks and bound
    with consumer:
        wait_until(lambda: consumer.health().ready, timeout=10)
    plain = Consumer(make_sqlite(), _noop, max_workers=1, max_handlers=1)
    with plain:
        wait_until(lambda: plain.health().ready, timeout=10)  # a default judge
    assert plain.health().live is False  # stopped
