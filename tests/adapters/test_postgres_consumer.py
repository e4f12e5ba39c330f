"""End to end on the local PostgreSQL: a Consumer with failing handlers (threads and
processes), three consumer processes keeping FIFO groups, and a SIGKILLed consumer."""

from __future__ import annotations

import functools
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from postgres_helpers import Database, pg

from queue_consumer import Consumer
from queue_consumer.adapters.postgres import PostgresMessage, PostgresQueue
from queue_consumer.testing import wait_until

__all__ = ["pg"]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")

CHILD = Path(__file__).with_name("postgres_child.py")


def flaky(out: str, fail_rate: float, messages: Iterator[PostgresMessage]) -> None:
    """Fail some deliveries, the same way in any process; log each success to ``out``."""
    for message in messages:
        if random.Random(f"{message.id}/{message.attempts}").random() < fail_rate:
            raise RuntimeError(f"message {message.id} failed on attempt {message.attempts}")
        with open(out, "a") as log:
            log.write(f"{message.id} {message.attempts} {os.getpid()}\n")


def successes(out: Path) -> Counter[int]:
    if not out.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in out.read_text().splitlines())


def drained(queue: PostgresQueue) -> bool:
    stats = queue.stats()
    return stats["depth"] == stats["in_flight"] == 0


class CountingQueue(PostgresQueue):
    """Counts what the consumer settles, and what each settle really changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.cleaned: Counter[int] = Counter()
        self.rejected = 0

    def cleanup(self, messages: Iterable[PostgresMessage]) -> int:
        batch = list(messages)
        done = super().cleanup(batch)
        with self.lock:
            self.cleaned.update(m.id for m in batch)
        return done

    def reject(self, messages: Iterable[PostgresMessage], *, error: str | None = None) -> int:
        batch = list(messages)
        with self.lock:
            self.rejected += len(batch)
        return super().reject(batch, error=error)


@pytest.mark.parametrize("threads", [True, False], ids=["threads", "processes"])
def test_a_thousand_messages_with_random_failures_none_lost(
    pg: Database, tmp_path: Path, threads: bool
) -> None:
    total = 1000
    out = tmp_path / "succeeded.txt"
    queue = CountingQueue(
        pg.conninfo,
        "jobs",
        schema=pg.schema,
        visibility_timeout=60,  # never expires here (and the heartbeat is on)
        max_messages=10,
        max_attempts=30,  # 0.3 ** 30: no message runs out of attempts
        retry_delay=0.0,
        wait_time=0.2,
    )
    pg.queues.append(queue)
    ids = queue.put_many([f"job-{n}" for n in range(total)])
    consumer = Consumer(
        queue,
        functools.partial(flaky, str(out), 0.3),
        max_workers=2,
        max_handlers=4,
        messages_bulk_size=3,
        with_thread_executor=threads,
    )
    with consumer:
        wait_until(lambda: drained(queue), timeout=90, message=f"{queue.stats()}")
    done = successes(out)
    duplicates = sum(done.values()) - len(done)
    print(f"{total} messages, {queue.rejected} failures, {duplicates} handled twice")
    assert set(done) == set(ids)  # nothing lost
    assert duplicates == 0  # and, with leases that never expired, nothing twice
    assert queue.cleaned == Counter(ids)
    assert queue.rejected > 100
    assert queue.stats() == dict.fromkeys(queue.stats(), 0)
    stats = consumer.statistics()
    assert (stats.succeeded, stats.failed, stats.errors) == (total, queue.rejected, 0)
    assert queue.statistics().stale == 0


@contextmanager
def consumers(
    url: str, out: Path, stop: Path, count: int, fail: float, delay: float = 0.002
) -> Iterator[list[Any]]:
    with ExitStack() as stack:
        children = []
        for n in range(count):
            child = stack.enter_context(
                subprocess.Popen(
                    [sys.executable, str(CHILD), url, str(out), str(stop), str(fail)],
                    stdout=subprocess.PIPE,
                    stderr=stack.enter_context((out.parent / f"child-{n}.log").open("w")),
                    text=True,
                    env={**os.environ, "CHILD_DELAY": str(delay)},
                )
            )
            # Runs before Popen's own exit (which waits for the child and closes its pipe).
            stack.callback(lambda c=child: c.poll() is None and c.kill())
            children.append(child)
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", f"exit {child.wait()}"
        yield children


def test_three_processes_keep_each_group_in_order_one_at_a_time(
    pg: Database, tmp_path: Path
) -> None:
    out, stop = tmp_path / "handled.txt", tmp_path / "stop"
    queue = pg.queue(wait_time=0.2)
    groups = {f"g{n}": queue.put_many(range(20), group=f"g{n}") for n in range(8)}
    free = queue.put_many([f"free-{n}" for n in range(40)])
    url = pg.url(wait_time=0.2, retry_delay=0, max_attempts=50)
    with consumers(url, out, stop, 3, fail=0.2) as children:
        wait_until(lambda: drained(queue), timeout=90, message=f"{queue.stats()}")
        stop.touch()
        for child in children:
            assert child.wait(timeout=60) == 0
    lines = [line.split() for line in out.read_text().splitlines()]
    handled = Counter(int(line[0]) for line in lines)
    every = [i for ids in groups.values() for i in ids] + free
    assert handled == Counter(every)  # each exactly once, none lost
    assert len({line[6] for line in lines}) == 3  # all three processes took part
    by_group: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for _id, group, body, _attempts, start, end, _pid in lines:
        if group != "None":
            by_group[group].append((float(start), float(end), int(body)))
    for group, runs in by_group.items():
        runs.sort()
        assert [body for *_, body in runs] == list(range(20)), f"{group} out of order"
        for (_, end, _), (start, _, _) in itertools.pairwise(runs):
            assert end <= start, f"two messages of {group} were handled at once"


def test_a_consumer_killed_mid_chunk_loses_nothing(pg: Database, tmp_path: Path) -> None:
    out, stop = tmp_path / "handled.txt", tmp_path / "stop"
    queue = pg.queue(wait_time=0.2, heartbeat=False)
    ids = queue.put_many([f"job-{n}" for n in range(200)])
    url = pg.url(wait_time=0.2, visibility_timeout=2)
    # 0.1 s a message, chunks of 5, 10 fetched at a time: it always holds leases.
    with consumers(url, out, stop, 1, fail=0.0, delay=0.1) as [child]:
        wait_until(lambda: len(successes(out)) >= 10, timeout=60, message="under way")
        os.kill(child.pid, signal.SIGKILL)  # in the middle of its chunks
        assert child.wait(timeout=30) == -signal.SIGKILL
    before = successes(out)
    assert 10 <= len(before) < len(ids)
    with consumers(url, out, stop, 1, fail=0.0) as [second]:
        wait_until(lambda: drained(queue), timeout=60, message=f"{queue.stats()}")
        stop.touch()
        assert second.wait(timeout=60) == 0
    done = successes(out)
    twice = [i for i, n in done.items() if n > 1]
    print(f"killed after {len(before)} handled; {len(twice)} handled twice (died before cleanup)")
    assert set(done) == set(ids)
    # Handled but not yet cleaned up when it died: at most what it held (2 workers x 10).
    assert len(twice) <= 20
    again = [line.split() for line in out.read_text().splitlines()]
    assert any(int(line[3]) == 2 for line in again)  # the expired leases came back, counted
