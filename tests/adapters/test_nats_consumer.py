"""Consumer + JetStreamQueue end to end on the shared nats-server: random failures in thread
and process mode, SIGKILL of a consumer mid-chunk, three consumer processes on one queue.
Delivery is at-least-once: the tests assert that nothing is lost and report duplicates."""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_consumer import Consumer, PermanentFailure
from queue_consumer.testing import wait_until

if __package__:
    from .nats_server import SHARED, MakeQueue, make_queue, shared_server, unique
else:
    from nats_server import SHARED, MakeQueue, make_queue, shared_server, unique

from queue_consumer.adapters.nats import JetStreamMessage, JetStreamQueue

__all__ = ["make_queue", "shared_server"]  # fixtures, used by name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def report_duplicates(seen: list[str]) -> int:
    repeats = sum(count - 1 for count in Counter(seen).values())
    if repeats:
        print(f"\n{repeats} message(s) handled more than once (at-least-once delivery)")
    return repeats


def settled(queue: JetStreamQueue) -> bool:
    stats = queue.stats()
    return stats["depth"] == 0 and stats["in_flight"] == 0


def flaky(out: str, rate: float, messages: Iterator[JetStreamMessage]) -> None:
    """Fails about ``rate`` of the deliveries (decided by body and attempt, so the same in
    threads and processes); records the successes, one line each."""
    for message in messages:
        if random.Random(f"{message.body}:{message.delivery_count}").random() < rate:
            raise RuntimeError(f"random failure on {message.body}")
        with open(out, "a", encoding="utf-8") as file:
            file.write(f"{message.body}\n")


def test_thousand_messages_with_random_failures(
    make_queue: MakeQueue, thread_mode: bool, tmp_path: Path
) -> None:
    queue = make_queue(max_attempts=3, retry_delay=0.01, max_retry_delay=0.05, ack_wait=30)
    bodies = [f"m{i:04d}" for i in range(1000)]
    queue.put_many(bodies)
    out = tmp_path / "handled.txt"
    handler = functools.partial(flaky, str(out), 0.2)
    consumer = Consumer(
        queue,
        handler,
        max_workers=2,
        max_handlers=4,
        messages_bulk_size=5,
        with_thread_executor=thread_mode,
    )
    with consumer:
        wait_until(lambda: settled(queue), timeout=90, interval=0.2, message="queue drained")
        wait_until(lambda: consumer.statistics().in_flight == 0, timeout=30)
    dead = {d.body for d in queue.dead_letters(limit=1000)}
    handled = lines(out)
    assert set(handled) | dead == set(bodies)  # nothing lost
    assert consumer.statistics().failed > 100  # the failures did happen
    adapter = queue.statistics()
    assert adapter.dead_lettered == len(dead) == queue.stats()["dead_letters"]
    assert adapter.settle_errors == 0 and adapter.held == 0
    print(f"\n{len(dead)} dead-lettered after 3 attempts")
    report_duplicates(handled)


CONSUMER = """
import os, signal, sys, time
from queue_consumer import Consumer, PermanentFailure
from queue_consumer.adapters.nats import JetStreamQueue

OUT, DELAY = sys.argv[1], float(sys.argv[2])

def handler(messages):
    for message in messages:
        time.sleep(DELAY)
        with open(OUT, "a") as out:
            out.write(f"{{os.getpid()}} {{message.body}}\\n")

queue = JetStreamQueue({stream!r}, servers={server!r}, ack_wait=2, wait_time=0.5)
consumer = Consumer(queue, handler, max_workers=2, max_handlers=4, messages_bulk_size=10)
consumer.start()
print("ready", flush=True)
consumer.supervise(blocking=True)
queue.close()
"""


def start_consumer(script: Path, out: Path, delay: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(script), str(out), str(delay)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def alive(process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"a consumer exited early with {process.returncode}")
    return True


def by_pid(out: Path) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for line in out.read_text().splitlines() if out.exists() else []:
        pid, body = line.split(" ", 1)
        result.setdefault(pid, []).append(body)
    return result


def handled(out: Path) -> list[str]:
    """Every body the consumer processes handled, with repeats."""
    return [body for got in by_pid(out).values() for body in got]


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    """Signal the consumer, wait for it, close its pipe; returns its exit code."""
    try:
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    return process.returncode


def test_sigkill_mid_chunk_then_a_new_consumer_drains(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    stream = unique()
    queue = make_queue(stream, ack_wait=2)
    bodies = [f"k{i:03d}" for i in range(200)]
    queue.put_many(bodies)
    script = tmp_path / "consumer.py"
    script.write_text(textwrap.dedent(CONSUMER.format(stream=stream, server=SHARED)))
    out = tmp_path / "handled.txt"

    first = start_consumer(script, out, delay=0.02)
    try:
        wait_until(lambda: alive(first) and len(handled(out)) >= 30, timeout=60, message="started")
    finally:
        # Mid-chunk: chunks of 10, one message per 20 ms.
        assert stop(first, signal.SIGKILL) == -signal.SIGKILL
    handled_before = len(handled(out))
    assert handled_before < len(bodies), "killed too late to test anything"

    second = start_consumer(script, out, delay=0.0)
    try:
        wait_until(
            lambda: alive(second) and set(handled(out)) == set(bodies),
            timeout=60,
            message="all handled",
        )
        wait_until(lambda: settled(queue), timeout=30, message="all acknowledged")
    finally:
        assert stop(second) == 0
    report_duplicates(handled(out))


def test_three_consumer_processes_share_one_queue(make_queue: MakeQueue, tmp_path: Path) -> None:
    stream = unique()
    queue = make_queue(stream, ack_wait=10)
    queue.put("warm-up")  # the stream and the consumer exist before three processes bind
    script = tmp_path / "consumer.py"
    script.write_text(textwrap.dedent(CONSUMER.format(stream=stream, server=SHARED)))
    out = tmp_path / "handled.txt"
    processes = [start_consumer(script, out, delay=0.003) for _ in range(3)]
    try:
        bodies = [f"t{i:03d}" for i in range(600)]
        queue.put_many(bodies)
        expected = {*bodies, "warm-up"}

        def everything() -> bool:
            return (
                all(alive(p) for p in processes)
                and {b for got in by_pid(out).values() for b in got} == expected
            )

        wait_until(everything, timeout=60, message="all handled")
        wait_until(lambda: settled(queue), timeout=30, message="all acknowledged")
    finally:
        codes = [stop(process) for process in processes]
    assert codes == [0, 0, 0]
    shares = {pid: len(got) for pid, got in by_pid(out).items()}
    print(f"\nper process: {sorted(shares.values())}")
    assert len(shares) >= 2, f"one process did all the work: {shares}"
    report_duplicates(handled(out))


def test_consumer_shutdown_hands_back_what_it_did_not_start(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    stream = unique()
    queue = make_queue(stream, ack_wait=60, max_messages=10)
    queue.put_many([f"h{i}" for i in range(30)])
    out = tmp_path / "handled.txt"

    def slow(messages: Iterator[JetStreamMessage]) -> None:
        for message in messages:
            time.sleep(0.05)  # the handler's work
            with open(out, "a", encoding="utf-8") as file:
                file.write(f"{message.body}\n")

    consumer = Consumer(queue, slow, max_workers=1, max_handlers=1, messages_bulk_size=1)
    with consumer:
        wait_until(lambda: len(lines(out)) >= 3, timeout=30)
    released = consumer.statistics().released
    handled = set(lines(out))
    # What the consumer fetched but did not start is back now, not after ack_wait (60 s).
    other = make_queue(stream, ack_wait=60)
    rest: set[str] = set()

    def drained() -> bool:
        batch = other.get()
        rest.update(m.body for m in batch)
        other.cleanup(batch)
        return handled | rest == {f"h{i}" for i in range(30)}

    wait_until(drained, timeout=15, message="the released messages came back at once")
    assert released > 0, "the consumer had fetched nothing it did not start"


def refuse_poison(messages: Iterator[JetStreamMessage]) -> None:
    for message in messages:
        if message.body == "poison":
            raise PermanentFailure("cannot be handled")


def test_permanent_failure_goes_to_dead_letters_at_once(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=5)
    queue.put_many(["ok-1", "poison", "ok-2"])
    with Consumer(queue, refuse_poison, max_workers=1, max_handlers=2) as consumer:
        wait_until(lambda: queue.stats()["dead_letters"] == 1, timeout=30)
        wait_until(lambda: settled(queue), timeout=30)
    [dead] = queue.dead_letters()
    assert dead.body == "poison" and dead.attempts == 1
    assert "cannot be handled" in (dead.last_error or "")
    assert consumer.statistics().dead_lettered == 1
