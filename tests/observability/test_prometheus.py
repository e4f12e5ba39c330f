"""/metrics scraped over HTTP during real runs on the SQLite queue, checked against the run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

import obs_handlers
from probes import get, probe, scrape, value

from queue_consumer import Consumer
from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.errors import ConfigurationError
from queue_consumer.observability.prometheus import PrometheusHooks
from queue_consumer.observability.server import serve
from queue_consumer.testing import wait_until

N = 40
FAILING = [b for b in range(N) if b % 7 == 0]  # obs_handlers.handle fails these


def _settled(consumer: Consumer) -> int:
    stats = consumer.statistics()
    return stats.succeeded + stats.failed + stats.released


def test_scraped_numbers_match_the_run(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    queue = make_sqlite(max_attempts=1)  # a failure goes straight to the dead letters
    queue.put_many([str(i) for i in range(N)])
    gate = threading.Event()

    def handler(messages: Iterator[Any]) -> None:
        gate.wait(10)  # hold the first chunks so the first scrape sees work in flight
        obs_handlers.handle(messages)

    metrics = PrometheusHooks(queue_stats_interval=0.1)
    consumer = Consumer(queue, handler, max_workers=1, max_handlers=3, hooks=[metrics])
    with serve(consumer, port=0, metrics=metrics) as server:
        consumer.start()
        try:
            wait_until(lambda: consumer.statistics().handlers_busy == 3, timeout=10)
            during = scrape(server.url)
            assert value(during, "queue_consumer_messages_in_flight") >= 3
            assert value(during, "queue_consumer_messages_settled_total", outcome="succeeded") == 0
            assert value(during, "queue_consumer_handler_slots_busy") == 3
            assert value(during, "queue_consumer_handler_slots") == 3
            gate.set()
            wait_until(lambda: _settled(consumer) == N, timeout=20)
            wait_until(lambda: queue.stats()["dead_letters"] == len(FAILING), timeout=10)
            wait_until(
                lambda: (
                    value(scrape(server.url), "queue_consumer_queue_messages", state="dead_letters")
                    == len(FAILING)
                ),
                timeout=10,
            )
            assert value(scrape(server.url), "queue_consumer_live") == 1
        finally:
            consumer.shutdown()
        after = scrape(server.url)  # stopped: every counter holds still, to compare exactly
        stats = consumer.statistics()
    assert value(after, "queue_consumer_messages_received_total") == stats.received == N
    assert value(after, "queue_consumer_messages_started_total") == N
    assert value(after, "queue_consumer_get_calls_total") == stats.get_calls
    settled = {
        outcome: value(after, "queue_consumer_messages_settled_total", outcome=outcome)
        for outcome in ("succeeded", "failed", "released")
    }
    assert settled == {"succeeded": N - len(FAILING), "failed": len(FAILING), "released": 0}
    assert value(after, "queue_consumer_messages_in_flight") == 0
    errors = value(after, "queue_consumer_errors_total", stage="handler", error_type="ValueError")
    assert errors == len(FAILING)
    # One histogram observation per chunk (bulk 1: per message), split by outcome.
    ok = value(after, "queue_consumer_process_duration_seconds_count", error_type="")
    failed = value(after, "queue_consumer_process_duration_seconds_count", error_type="ValueError")
    assert (ok, failed) == (N - len(FAILING), len(FAILING))
    top = value(after, "queue_consumer_process_duration_seconds_bucket", error_type="", le="3600.0")
    assert top == ok
    assert value(after, "queue_consumer_queue_messages", state="visible") == 0
    assert value(after, "queue_consumer_live") == 0  # stopped
    gets = value(
        after, "queue_consumer_operation_duration_seconds_count", operation="get", error_type=""
    )
    assert gets == stats.get_calls


def test_process_mode_exports_from_the_parent(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    queue = make_sqlite(max_attempts=1)
    queue.put_many([str(i) for i in range(1, 13)])  # 7 fails
    metrics = PrometheusHooks()
    consumer = Consumer(
        queue,
        obs_handlers.handle,
        max_workers=1,
        max_handlers=2,
        with_thread_executor=False,
        hooks=[metrics],
    )
    with serve(consumer, port=0, metrics=metrics) as server:
        consumer.start()
        try:
            wait_until(lambda: _settled(consumer) == 12, timeout=60)
            samples = scrape(server.url)
        finally:
            consumer.shutdown()
    assert value(samples, "queue_consumer_messages_settled_total", outcome="succeeded") == 11
    assert value(samples, "queue_consumer_messages_settled_total", outcome="failed") == 1
    failed = value(
        samples, "queue_consumer_process_duration_seconds_count", error_type="ValueError"
    )
    assert failed == 1


def test_one_call_serves_counters_without_hooks(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    queue = make_sqlite()
    queue.put_many(["1", "2", "3"])
    consumer = Consumer(queue, obs_handlers.handle, max_workers=1, max_handlers=1)
    with serve(consumer, port=0) as server:
        assert server.host == "127.0.0.1"
        consumer.start()
        try:
            wait_until(lambda: consumer.statistics().succeeded == 3, timeout=10)
            samples = scrape(server.url)
        finally:
            consumer.shutdown()
        assert value(samples, "queue_consumer_messages_received_total") == 3
        assert get(server.url + "/nothing")[0] == 404


def test_a_taken_port_is_a_configuration_error(make_sqlite: Callable[..., SQLiteQueue]) -> None:
    consumer = Consumer(make_sqlite(), obs_handlers.handle, max_workers=1, max_handlers=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigurationError, match=r"cannot serve metrics on 127\.0\.0\.1"):
            serve(consumer, port=taken.getsockname()[1])


def test_the_extra_is_named_when_missing() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import queue_consumer.observability\n"
        "import queue_consumer.observability.prometheus\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install queue-consumer[prometheus]" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_run_serves_metrics_and_probes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}?queue=emails"
    (tmp_path / "tasks.py").write_text(
        "def handle(messages):\n    for m in messages:\n        pass\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    python = [sys.executable, "-m", "queue_consumer"]
    subprocess.run(
        [*python, "send", url, "-"], input="a\nb\nc\n", text=True, check=True, env=env, cwd=tmp_path
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            *python,
            "run",
            "tasks:handle",
            "--queue",
            url,
            "--metrics-port",
            str(port),
            "--workers",
            "1",
            "--handlers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def scraped() -> bool:
            try:
                return (
                    value(
                        scrape(base), "queue_consumer_messages_settled_total", outcome="succeeded"
                    )
                    == 3
                )
            except OSError:
                return False

        wait_until(scraped, timeout=30)
        assert probe(base + "/livez")[0] == 200
        status, body = probe(base + "/readyz")
        assert status == 200 or "get()" in body["reason"], body  # ready once get() completed
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr


def test_handlers_own_metrics_from_children_on_the_same_port(
    make_sqlite: Callable[..., SQLiteQueue], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import obs_child_metrics

    directory = tmp_path / "prometheus-children"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))  # before children start
    queue = make_sqlite()
    queue.put_many(["a", "b", "c", "d", "e"])
    metrics = PrometheusHooks()
    consumer = Consumer(
        queue,
        obs_child_metrics.send_emails,
        max_workers=1,
        max_handlers=2,
        with_thread_executor=False,
        mp_context="spawn",  # children take this environment (a forkserver may be older)
        hooks=[metrics],
    )
    with serve(consumer, port=0, metrics=metrics) as server:
        consumer.start()
        try:
            wait_until(lambda: consumer.statistics().succeeded == 5, timeout=60)
            samples = scrape(server.url)
        finally:
            consumer.shutdown()
    assert value(samples, "obs_emails_sent_total") == 5  # summed over the children
    assert value(samples, "queue_consumer_messages_settled_total", outcome="succeeded") == 5


def test_sqs_queue_depth_is_exported_once_per_state(make_queue: Callable[..., str]) -> None:
    from queue_consumer.adapters.sqs import SQSQueue

    with SQSQueue(queue_url=make_queue(), wait_time_seconds=1) as queue:
        queue.put_many(["a", "b"])
        metrics = PrometheusHooks(queue_stats_interval=0.1)
        consumer = Consumer(queue, obs_handlers.handle, max_workers=1, max_handlers=1)
        with serve(consumer, port=0, metrics=metrics) as server:  # not started: all visible
            wait_until(
                lambda: (
                    ("queue_consumer_queue_messages", frozenset({("state", "visible")}))
                    in scrape(server.url)
                ),
                timeout=20,
            )
            status, body = get(server.url + "/metrics")
    assert status == 200
    states = [
        line for line in body.splitlines() if line.startswith("queue_consumer_queue_messages{")
    ]
    assert len(states) == len(set(states))
    assert sorted(line.split('state="')[1].split('"')[0] for line in states) == [
        "delayed",
        "depth",
        "in_flight",
        "visible",
    ]
    assert 'messaging_system="aws_sqs"' in states[0]
    assert all(line.endswith(" 2.0") for line in states if 'state="visible"' in line)
