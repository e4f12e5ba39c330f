"""RabbitMQQueue shared by consumer processes: three share the work; SIGKILL loses nothing.

Each child is ``python -c CHILD URL OUT DELAY``: a Consumer that appends ``BODY PID`` to
OUT for every message it handled, until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from rabbitmq_server import make_queue, rabbit

from queue_consumer.adapters.rabbitmq import RabbitMQQueue
from queue_consumer.testing import wait_until

__all__ = ["make_queue", "rabbit"]  # fixtures

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")

MakeQueue = Callable[..., RabbitMQQueue]

CHILD = r"""
import os, sys, time
from queue_consumer import Consumer
from queue_consumer.adapters.rabbitmq import from_url

url, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])

def handler(messages):
    for message in messages:
        time.sleep(delay)
        with open(out, "a") as log:
            log.write(f"{message.body} {os.getpid()}\n")

with from_url(url) as queue:
    with Consumer(queue, handler, max_workers=1, max_handlers=2, messages_bulk_size=5) as c:
        c.supervise(blocking=True)
"""


def start(url: str, out: Path, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, url, str(out), str(delay)], text=True)


def handled(out: Path) -> Counter[str]:
    lines = out.read_text().splitlines() if out.exists() else []
    return Counter(line.split()[0] for line in lines)


def by_pid(out: Path) -> Counter[str]:
    lines = out.read_text().splitlines() if out.exists() else []
    return Counter(line.split()[1] for line in lines)


def url_of(queue: RabbitMQQueue, rabbit: str) -> str:
    return f"{rabbit}?queue={queue.queue}&prefetch=10&max_messages=5&wait_time=0.2"


def test_three_consumer_processes_share_the_work(
    make_queue: MakeQueue, rabbit: str, tmp_path: Path
) -> None:
    queue = make_queue()
    bodies = [f"job-{n}" for n in range(300)]
    out = tmp_path / "handled.txt"
    children = [start(url_of(queue, rabbit), out, 0.005) for _ in range(3)]
    try:
        # All three consume before the messages come: the broker then deals them round.
        wait_until(lambda: queue.stats()["consumers"] == 3, timeout=60, message="3 consumers")
        queue.put_many(bodies)
        wait_until(lambda: set(handled(out)) == set(bodies), timeout=90, message="all handled")
        wait_until(lambda: queue.stats()["depth"] == 0, timeout=30)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        codes = [child.wait(timeout=60) for child in children]
    assert codes == [0, 0, 0]
    assert handled(out) == Counter(bodies)  # each once: no fault, no duplicate
    assert len(by_pid(out)) == 3  # every process took a share


def test_sigkill_mid_chunk_then_a_new_consumer_drains(
    make_queue: MakeQueue, rabbit: str, tmp_path: Path
) -> None:
    queue = make_queue()
    bodies = [f"job-{n}" for n in range(200)]
    queue.put_many(bodies)
    out = tmp_path / "handled.txt"
    victim = start(url_of(queue, rabbit), out, 0.02)  # 5-message chunks of 0.1 s
    try:
        wait_until(lambda: sum(handled(out).values()) >= 23, timeout=60)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    before = handled(out)
    assert 0 < len(before) < len(bodies)
    heir = start(url_of(queue, rabbit), out, 0.0)
    try:
        wait_until(lambda: set(handled(out)) == set(bodies), timeout=90, message="all handled")
        wait_until(lambda: queue.stats()["depth"] == 0, timeout=30)
    finally:
        heir.send_signal(signal.SIGTERM)
        assert heir.wait(timeout=60) == 0
    after = handled(out)
    duplicates = sum(after.values()) - len(after)
    print(f"{len(before)} handled before the kill, {duplicates} handled again after it")
    # Only what the killed process handled but had not acked comes again: at most its
    # prefetch (10) deliveries.
    assert duplicates <= 10
    assert set(after) == set(bodies)
