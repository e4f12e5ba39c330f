"""statsd datagrams, as a real UDP socket on 127.0.0.1 receives them during a run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import obs_handlers
import pytest

from queue_consumer import Consumer
from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.errors import ConfigurationError
from queue_consumer.observability.statsd import StatsdHooks
from queue_consumer.testing import wait_until


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()


def _lines(sock: socket.socket, into: list[str]) -> list[str]:
    """Add what has arrived (for at most half a second: an idle consumer never stops
    sending ``requested``) to ``into``."""
    deadline = time.monotonic() + 0.5
    try:
        while time.monotonic() < deadline:
            into.extend(sock.recv(65535).decode().splitlines())
    except TimeoutError:
        pass
    return into


def _totals(lines: list[str]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for line in lines:
        name_value, kind = line.split("|")[:2]
        name, number = name_value.rsplit(":", 1)
        if kind == "c":
            totals[name] += int(float(number))
    return totals


def test_counters_and_timings_arrive(
    make_sqlite: Callable[..., SQLiteQueue], listener: socket.socket
) -> None:
    queue = make_sqlite(max_attempts=1)
    queue.put_many([str(i) for i in range(1, 16)])  # 7 and 14 fail
    port = listener.getsockname()[1]
    statsd = StatsdHooks(queue, f"127.0.0.1:{port}", prefix="jobs", extra_tags={"env": "test"})
    consumer = Consumer(queue, obs_handlers.handle, max_workers=1, max_handlers=2, hooks=[statsd])
    lines: list[str] = []
    consumer.start()
    try:
        wait_until(
            lambda: _totals(_lines(listener, lines))["jobs.messages.succeeded"] == 13, timeout=20
        )
        wait_until(lambda: _totals(_lines(listener, lines))["jobs.messages.failed"] == 2)
    finally:
        consumer.shutdown()
        statsd.close()
    totals = _totals(lines)
    assert totals["jobs.messages.received"] == 15
    assert totals["jobs.messages.started"] == 15
    timings = [line for line in lines if line.startswith("jobs.chunk.duration:")]
    assert len(timings) == 15 and all("|ms|" in line for line in timings)
    tags = f"|#queue:{queue.queue},system:sqlite,env:test"
    assert all(line.endswith(tags) for line in lines), lines[:3]


def test_seed_names_and_influx_tags(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    statsd = StatsdHooks("orders", f"127.0.0.1:{port}", prefix="", tags="influx", seed_names=True)
    statsd.on_chunk_finished(["a", "b"], ["c"], "ValueError: x", 0.25)
    statsd.on_worker_revived("worker-0")
    statsd.on_handler_stuck(["a"], 99.0)
    lines = _lines(listener, [])
    statsd.close()
    assert lines == [
        "chunk.duration,queue=orders:250.0|ms",
        "successful.messages,queue=orders:2|c",
        "failed.messages,queue=orders:1|c",
        "revived.workers,queue=orders:1|c",
        "stuck.handlers,queue=orders:1|c",
    ]


def test_nobody_listening_never_blocks_or_raises() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed at once: nobody listens there
    statsd = StatsdHooks(address=f"127.0.0.1:{port}")
    for _ in range(100):
        statsd.on_received(["m"])
    statsd.close()


def test_bad_addresses_are_configuration_errors() -> None:
    for address in ("localhost", "host:port", "127.0.0.1:0"):
        with pytest.raises(ConfigurationError):
            StatsdHooks(address=address)


def test_cli_statsd_option(tmp_path: Path, listener: socket.socket) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}?queue=mail"
    (tmp_path / "tasks.py").write_text(
        "def handle(messages):\n    for m in messages:\n        pass\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    python = [sys.executable, "-m", "queue_consumer"]
    subprocess.run(
        [*python, "send", url, "-"], input="a\nb\n", text=True, check=True, env=env, cwd=tmp_path
    )
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        [*python, "run", "tasks:handle", "--queue", url, "--statsd", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        wait_until(
            lambda: _totals(_lines(listener, lines))["queue_consumer.messages.succeeded"] == 2,
            timeout=30,
        )
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert any(line.endswith("|#queue:mail,system:sqlite") for line in lines)
