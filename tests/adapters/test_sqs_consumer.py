"""Consumer + SQSQueue end to end, against moto's server over HTTP.

moto may lose a delete under concurrency (a deleted message comes back), so these tests
assert that nothing is lost and report duplicates instead of asserting exactly-once.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_consumer import Consumer
from queue_consumer.adapters.sqs import SQSMessage, SQSQueue
from queue_consumer.testing import wait_until

if __package__:
    from .sqs_server import aws_environment, queue_counts
else:
    from sqs_server import aws_environment, queue_counts

MakeQueue = Callable[..., str]


def fill(queue: SQSQueue, bodies: list[str], group_id: str | None = None) -> None:
    for start in range(0, len(bodies), 100):
        queue.put_many(bodies[start : start + 100], group_id=group_id)


def empty(client: Any, url: str) -> bool:
    return queue_counts(client, url) == (0, 0)


def report_duplicates(seen: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> int:
    repeats = sum(count - 1 for count in Counter(seen).values())
    if repeats:  # moto's lost deletes; real SQS is at-least-once too
        print(f"\n{repeats} message(s) handled more than once (at-least-once delivery)")
    return repeats


def alive(process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the consumer exited early with {process.returncode}")
    return True


# -- handlers (module level: process mode pickles them by reference) -----------------


def record_to_file(path: str, messages: Iterator[SQSMessage]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        for message in messages:
            out.write(message.body + "\n")
            out.flush()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


class FlakyRecorder:
    """Fails about ``rate`` of the attempts at random; records successes."""

    def __init__(self, rate: float, seed: int = 7) -> None:
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.succeeded: list[str] = []
        self.failures = 0

    def __call__(self, messages: Iterator[SQSMessage]) -> None:
        for message in messages:
            with self.lock:
                fail = self.random.random() < self.rate
                if fail:
                    self.failures += 1
                else:
                    self.succeeded.append(message.body)
            if fail:
                raise RuntimeError(f"random failure on {message.body}")


# -- tests ----------------------------------------------------------------------------


def test_thousand_messages_with_random_failures(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=30)
    handler = FlakyRecorder(rate=0.2)
    bodies = [f"m{i:04d}" for i in range(1000)]
    with SQSQueue(queue_url=url, wait_time_seconds=1, reject_policy="immediate") as queue:
        consumer = Consumer(queue, handler, max_workers=4, max_handlers=8, messages_bulk_size=5)
        with consumer:
            # Filled in rounds: moto's ReceiveMessage scans the whole queue, so keep it short.
            for start in range(0, len(bodies), 250):
                fill(queue, bodies[start : start + 250])
                sent = set(bodies[: start + 250])
                wait_until(
                    lambda sent=sent: sent <= set(handler.succeeded),  # type: ignore[misc]
                    timeout=90,
                    message=f"round starting at {start}",
                )
            wait_until(lambda: empty(sqs_client, url), timeout=60, message="queue drained")
        stats = consumer.statistics()
        adapter = queue.statistics()
    assert set(handler.succeeded) == set(bodies)  # nothing lost
    assert handler.failures > 50  # the failures did happen
    assert stats.failed >= handler.failures  # the rest of a failed chunk fails with it
    # Every failure reached SQS: rejected, or its receipt had expired (logged).
    assert adapter.rejected + adapter.invalid_receipts >= stats.failed
    assert adapter.deleted + adapter.invalid_receipts >= stats.succeeded
    assert adapter.failed_entries == 0
    assert adapter.held == 0
    report_duplicates(handler.succeeded)


def test_process_mode(make_queue: MakeQueue, sqs_client: Any, tmp_path: Path) -> None:
    url = make_queue()
    out = tmp_path / "handled.txt"
    bodies = [f"p{i}" for i in range(60)]
    with SQSQueue(queue_url=url, wait_time_seconds=1) as queue:
        fill(queue, bodies)
        handler = functools.partial(record_to_file, str(out))
        consumer = Consumer(
            queue, handler, max_workers=2, max_handlers=2, with_thread_executor=False
        )
        with consumer:
            wait_until(lambda: set(lines(out)) == set(bodies), timeout=90, message="handled")
            wait_until(lambda: empty(sqs_client, url), timeout=60, message="deleted")
        assert consumer.statistics().succeeded >= len(bodies)
    report_duplicates(lines(out))


def test_fifo_order_within_groups_groups_in_parallel(
    make_queue: MakeQueue, sqs_client: Any
) -> None:
    url = make_queue(fifo=True)
    groups = ["a", "b", "c"]
    lock = threading.Lock()
    handled: dict[str, list[int]] = {g: [] for g in groups}
    running: set[str] = set()
    overlap = threading.Event()

    def handler(messages: Iterator[SQSMessage]) -> None:
        for message in messages:
            group, number = message.body.split(":")
            with lock:
                running.add(group)
                if len(running) > 1:
                    overlap.set()
            time.sleep(0.02)
            with lock:
                running.discard(group)
                handled[group].append(int(number))

    with SQSQueue(queue_url=url, wait_time_seconds=1, reject_policy=0) as queue:
        for group in groups:
            fill(queue, [f"{group}:{n}" for n in range(20)], group_id=group)
        with Consumer(queue, handler, max_workers=3, max_handlers=3, messages_bulk_size=2):
            wait_until(
                lambda: all(len(set(handled[g])) == 20 for g in groups),
                timeout=90,
                message="every group handled",
            )
            wait_until(lambda: empty(sqs_client, url), timeout=60, message="deleted")
    for group in groups:
        firsts = list(dict.fromkeys(handled[group]))  # first time each was handled
        assert firsts == list(range(20)), f"group {group} out of order: {handled[group]}"
    assert overlap.is_set(), "groups were never handled in parallel"


def test_release_on_shutdown_makes_messages_visible_at_once(
    make_queue: MakeQueue, sqs_client: Any
) -> None:
    url = make_queue(VisibilityTimeout=600)
    started = threading.Event()
    proceed = threading.Event()

    def handler(messages: Iterator[SQSMessage]) -> None:
        for _ in messages:
            started.set()
            proceed.wait(30)

    with SQSQueue(queue_url=url, wait_time_seconds=1, max_messages=10) as queue:
        fill(queue, [f"r{i}" for i in range(10)])
        consumer = Consumer(queue, handler, max_workers=1, max_handlers=1)
        consumer.start()
        assert started.wait(30)
        wait_until(lambda: queue.statistics().held >= 2, timeout=30, message="a batch held")
        stopper = threading.Thread(target=consumer.shutdown)
        stopper.start()
        proceed.set()
        stopper.join(60)
        assert not stopper.is_alive()
        held_back = queue.statistics()
        assert held_back.released >= 1
        assert held_back.held == 0
        # Released messages are visible now, not in 10 minutes.
        visible, in_flight = queue_counts(sqs_client, url)
        assert visible == held_back.released + (10 - held_back.received)
        assert in_flight == 0
        assert consumer.statistics().succeeded + held_back.released == held_back.received


def test_sigkill_mid_run_then_restart_loses_nothing(
    make_queue: MakeQueue, sqs_client: Any, sqs_env: dict[str, str], tmp_path: Path
) -> None:
    url = make_queue(VisibilityTimeout=2)
    bodies = [f"k{i:03d}" for i in range(150)]
    with SQSQueue(queue_url=url, wait_time_seconds=0, heartbeat=False) as queue:
        fill(queue, bodies)
    out = tmp_path / "handled.txt"
    script = tmp_path / "consumer.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from queue_consumer import Consumer
            from queue_consumer.adapters.sqs import SQSQueue

            def handler(messages):
                with open({str(out)!r}, "a") as f:
                    for message in messages:
                        time.sleep(0.02)
                        f.write(message.body + "\\n")
                        f.flush()

            queue = SQSQueue(queue_url={url!r}, wait_time_seconds=1, reject_policy=0)
            consumer = Consumer(queue, handler, max_workers=2, max_handlers=4)
            consumer.start()
            consumer.supervise(blocking=True)
            """
        )
    )
    env = {**os.environ, **aws_environment(sqs_env["AWS_ENDPOINT_URL_SQS"])}

    first = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        wait_until(lambda: alive(first) and len(lines(out)) >= 30, timeout=60, message="started")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    handled_before = len(lines(out))
    assert handled_before < len(bodies), "killed too late to test anything"

    second = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        wait_until(
            lambda: alive(second) and set(lines(out)) == set(bodies),
            timeout=90,
            message="all handled",
        )
        wait_until(lambda: empty(sqs_client, url), timeout=60, message="all deleted")
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    report_duplicates(lines(out))


def test_seed_readme_queue_verbatim_in_thread_mode(make_queue: MakeQueue, sqs_client: Any) -> None:
    """The seed README's own ``Queue`` class, as printed there (short wait aside)."""
    import boto3

    url = make_queue(name="my_queue")
    for i in range(20):
        sqs_client.send_message(QueueUrl=url, MessageBody=f"seed-{i}")
    done: list[str] = []

    def do_some_stuff(message: Any) -> None:
        done.append(message.body)

    class Queue:
        def __init__(self, queue_name, max_number_of_messages=10, wait_time_seconds=20):  # type: ignore[no-untyped-def]
            self._max_number_of_messages = max_number_of_messages
            self._wait_time_seconds = wait_time_seconds
            self._sqs = boto3.resource("sqs").get_queue_by_name(QueueName=queue_name)

        def get(self):  # type: ignore[no-untyped-def]
            return self._sqs.receive_messages(
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                MaxNumberOfMessages=self._max_number_of_messages,
                WaitTimeSeconds=self._wait_time_seconds,
            )

        def cleanup(self, messages):  # type: ignore[no-untyped-def]
            self._sqs.delete_messages(
                Entries=[
                    {
                        "Id": message.message_id,
                        "ReceiptHandle": message.receipt_handle,
                    }
                    for message in messages
                ]
            )

        def handler(self, messages):  # type: ignore[no-untyped-def]
            for message in messages:
                do_some_stuff(message)

    consumer = Consumer(Queue("my_queue", wait_time_seconds=1))
    consumer.start()
    try:
        wait_until(lambda: set(done) == {f"seed-{i}" for i in range(20)}, timeout=60)
        wait_until(lambda: empty(sqs_client, url), timeout=60, message="deleted")
    finally:
        consumer.shutdown()
    sqs_client.delete_queue(QueueUrl=url)  # the name is fixed: leave none behind


def test_fifo_order_holds_through_failures(make_queue: MakeQueue, sqs_client: Any) -> None:
    # A failure releases the rest of its group's batch: nothing of the group overtakes it.
    url = make_queue(fifo=True)
    groups = ["x", "y"]
    lock = threading.Lock()
    succeeded: dict[str, list[int]] = {g: [] for g in groups}
    rng = random.Random(3)
    failures = 0

    def handler(messages: Iterator[SQSMessage]) -> None:
        nonlocal failures
        for message in messages:
            group, number = message.body.split(":")
            with lock:
                if rng.random() < 0.25:
                    failures += 1
                    raise RuntimeError(f"random failure on {message.body}")
                succeeded[group].append(int(number))

    with SQSQueue(queue_url=url, wait_time_seconds=1, reject_policy=0) as queue:
        for group in groups:
            fill(queue, [f"{group}:{n}" for n in range(15)], group_id=group)
        with Consumer(queue, handler, max_workers=2, max_handlers=2, messages_bulk_size=3):
            wait_until(
                lambda: all(len(set(succeeded[g])) == 15 for g in groups),
                timeout=90,
                message="every group handled",
            )
    assert failures > 0
    for group in groups:
        firsts = list(dict.fromkeys(succeeded[group]))
        assert firsts == list(range(15)), f"group {group} out of order: {succeeded[group]}"


def test_heartbeat_covers_a_slow_handler_in_process_mode(
    make_queue: MakeQueue, sqs_client: Any, tmp_path: Path
) -> None:
    url = make_queue(VisibilityTimeout=2)
    out = tmp_path / "handled.txt"
    with SQSQueue(queue_url=url, wait_time_seconds=1) as queue:
        queue.put("slow")
        handler = functools.partial(slow_record_to_file, str(out))
        with Consumer(queue, handler, max_workers=1, max_handlers=2, with_thread_executor=False):
            wait_until(lambda: lines(out) == ["slow"], timeout=60, message="handled")
            wait_until(lambda: empty(sqs_client, url), timeout=30, message="deleted")
        assert queue.statistics().extended >= 1
    # Handled for 5 s with a 2 s visibility timeout, yet delivered only once.
    assert lines(out) == ["slow"]


def slow_record_to_file(path: str, messages: Iterator[SQSMessage]) -> None:
    for message in messages:
        time.sleep(5)
        record_to_file(path, iter([message]))
