"""No message is lost or deleted twice, whatever fails: handlers, handler processes, settling.

Thousands of messages go through a MemoryQueue with a short visibility timeout while
handlers fail at random (seeded), handler processes SIGKILL themselves mid-chunk, cleanup
fails once now and then, and reject fails for good now and then (those messages are left
leased and come back when their lease expires). At the end every message was deleted
exactly once, every delivery was settled exactly once (or abandoned by a settle call that
failed: the consumer calls once, the queue delivers again), and only deliveries a handler
finished were cleaned up.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import robust_handlers
from robust_handlers import read_trace, roll

from queue_consumer import Consumer, MemoryMessage, MemoryQueue
from queue_consumer.testing import wait_until

N = 3000
SEED = 20261128
Delivery = tuple[int, int]  # (message id, receipt)


class AuditedQueue(MemoryQueue):
    """A MemoryQueue that records every delivery, settlement and real deletion.

    It also misbehaves on purpose (seeded): cleanup fails on its first attempt for a few
    deliveries and reject always fails for a few; the consumer does not retry (that is the
    queue's job), so the lease expires and those messages come back.
    """

    def __init__(self, seed: int, flaky_cleanup: float, doomed_reject: float) -> None:
        super().__init__(visibility_timeout=2.0, max_messages=10, reject_delay=0.02)
        self.seed = seed
        self.flaky_cleanup = flaky_cleanup
        self.doomed_reject = doomed_reject
        self.audit = threading.Lock()
        self.delivered: set[Delivery] = set()
        self.settled: defaultdict[Delivery, list[str]] = defaultdict(list)
        self.deletions: Counter[int] = Counter()
        #: deliveries whose settle call raised, by kind (they come back after their lease)
        self.abandoned: defaultdict[str, set[Delivery]] = defaultdict(set)
        self.raised = 0  #: settle calls that raised (the consumer counts them as errors)
        self._failed_once: set[Delivery] = set()

    def get(self) -> list[MemoryMessage]:
        messages = super().get()
        with self.audit:
            self.delivered.update((m.id, m.receipt) for m in messages)
        return messages

    def cleanup(self, messages: Iterable[MemoryMessage]) -> None:
        messages = list(messages)
        with self.audit:
            flaky = [
                d
                for m in messages
                if roll(self.seed, "cleanup", m) < self.flaky_cleanup
                and (d := (m.id, m.receipt)) not in self._failed_once
            ]
            if flaky:
                self._failed_once.update(flaky)
                self.abandoned["cleanup"].update((m.id, m.receipt) for m in messages)
                self.raised += 1
                raise ConnectionError("cleanup failed once (seeded)")
            for message in messages:
                self.settled[(message.id, message.receipt)].append("cleanup")
                before = self.deleted
                super().cleanup([message])
                self.deletions[message.id] += self.deleted - before

    def reject(self, messages: Iterable[MemoryMessage], delay: float | None = None) -> None:
        messages = list(messages)
        with self.audit:
            if any(roll(self.seed, "reject", m) < self.doomed_reject for m in messages):
                self.abandoned["reject"].update((m.id, m.receipt) for m in messages)
                self.raised += 1
                raise ConnectionError("reject keeps failing (seeded)")
            self._settle("reject", messages)
        super().reject(messages, delay)

    def release(self, messages: Iterable[MemoryMessage]) -> None:
        messages = list(messages)
        with self.audit:
            self._settle("release", messages)
        MemoryQueue.reject(self, messages, 0)

    def _settle(self, kind: str, messages: list[MemoryMessage]) -> None:
        for message in messages:
            self.settled[(message.id, message.receipt)].append(kind)


def handler_processes() -> list[int]:
    """This test's handler processes: children of a forkserver that is a child of ours.

    Found through /proc (no psutil); the forkserver's own children are exactly the handler
    processes, and the ppid checks keep the killer away from anything else on the machine.
    """
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read()
        except OSError:  # it exited meanwhile
            continue
        table[int(entry)] = (int(stat.rsplit(b")", 1)[1].split()[1]), cmdline)
    servers = {
        pid
        for pid, (ppid, cmdline) in table.items()
        if ppid == os.getpid() and b"forkserver" in cmdline
    }
    return sorted(pid for pid, (ppid, _) in table.items() if ppid in servers)


class ChildKiller(threading.Thread):
    """SIGKILLs a random handler process every so often, whatever it is doing then:
    starting, idle, unpickling, in the handler, or sending its outcome back."""

    def __init__(self, seed: int) -> None:
        super().__init__(name="child-killer", daemon=True)
        self.random = random.Random(seed)
        self.done = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while not self.done.wait(self.random.uniform(0.05, 0.3)):
            victims = handler_processes()
            if victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.random.choice(victims), signal.SIGKILL)
                    self.kills += 1

    def __enter__(self) -> ChildKiller:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.join()


def run_to_the_end(
    queue: AuditedQueue, handler: Callable[..., object], thread_mode: bool, bulk: int
) -> dict[str, int]:
    """Consume half the queue, shut down (releasing what was fetched), then finish it."""
    ids = set(queue.put_many(range(N)))
    totals: Counter[str] = Counter()
    for goal in (N // 2, N):
        consumer = Consumer(
            queue,
            handler,
            max_workers=2,
            max_handlers=4,
            messages_bulk_size=bulk,
            with_thread_executor=thread_mode,
        )
        with consumer:
            wait_until(
                lambda goal=goal: queue.deleted >= goal,  # type: ignore[misc]
                timeout=100,  # a loaded machine: failed batch calls wait out 2 s leases
                message=lambda c=consumer: f"queue {queue.stats()}, consumer {c.statistics()}",
            )
        stats = consumer.statistics()
        assert stats.in_flight == 0
        totals.update({field: getattr(stats, field) for field in COUNTED})
    assert set(queue.deletions) == ids
    return dict(totals)


COUNTED = ("received", "succeeded", "failed", "released", "errors")


def check_ledger(
    queue: AuditedQueue, stats: dict[str, int], trace_path: str
) -> dict[str, set[Delivery]]:
    """The invariants every run must keep; returns the handler's trace by fate."""
    fates: dict[str, set[Delivery]] = {"ok": set(), "fail": set(), "kill": set()}
    for fate, message_id, receipt in read_trace(trace_path):
        fates[fate].add((int(message_id), int(receipt)))

    # Each message was really deleted exactly once.
    assert queue.deleted == N
    assert len(queue) == 0
    assert set(queue.deletions.values()) == {1}
    # Each delivery was settled exactly once, or abandoned by a settle call that failed.
    abandoned = queue.abandoned["cleanup"] | queue.abandoned["reject"]
    assert abandoned.isdisjoint(queue.settled)
    assert set(queue.settled) | abandoned == queue.delivered
    twice = {d: kinds for d, kinds in queue.settled.items() if len(kinds) != 1}
    assert not twice, f"deliveries settled more than once: {list(twice.items())[:5]}"
    by_kind: defaultdict[str, set[Delivery]] = defaultdict(set)
    for delivery, (kind,) in queue.settled.items():
        by_kind[kind].add(delivery)
    # Only what a handler finished was cleaned up; what failed or died never was.
    assert by_kind["cleanup"] <= fates["ok"]
    assert not by_kind["cleanup"] & (fates["fail"] | fates["kill"])
    assert (fates["fail"] | fates["kill"]) <= by_kind["reject"] | queue.abandoned["reject"]
    # Released deliveries were never tried: no trace line of the handler names them.
    assert by_kind["release"].isdisjoint(fates["ok"] | fates["fail"] | fates["kill"])
    # The consumer's own books agree with the queue's (a settle call counts when it is made).
    assert stats["received"] == len(queue.delivered)
    assert stats["succeeded"] == len(by_kind["cleanup"]) + len(queue.abandoned["cleanup"])
    assert stats["failed"] == len(by_kind["reject"]) + len(queue.abandoned["reject"])
    assert stats["released"] == len(by_kind["release"])
    assert stats["errors"] == queue.raised
    # The chaos really happened (a run without failures proves nothing).
    assert len(fates["fail"]) > 20
    assert queue.raised > 0
    return fates


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bulk", [1, 5])
def test_iterator_handler_loses_nothing(tmp_path: Any, thread_mode: bool, bulk: int) -> None:
    trace_path = str(tmp_path / "trace")
    kill_rate = 0.0 if thread_mode else 0.01
    handler = functools.partial(robust_handlers.chaotic, trace_path, SEED + bulk, 0.08, kill_rate)
    queue = AuditedQueue(SEED + bulk, flaky_cleanup=0.002, doomed_reject=0.01)

    if thread_mode:
        stats = run_to_the_end(queue, handler, thread_mode, bulk)
    else:
        with ChildKiller(SEED + bulk) as killer:
            stats = run_to_the_end(queue, handler, thread_mode, bulk)
        assert killer.kills > 3

    fates = check_ledger(queue, stats, trace_path)
    cleaned = {d for d, kinds in queue.settled.items() if kinds == ["cleanup"]}
    if thread_mode:
        # Without killed processes, what the handler finished is exactly what was cleaned
        # (or sent to a cleanup call that failed: those came back and were handled again).
        assert cleaned == fates["ok"] - queue.abandoned["cleanup"]
    else:
        assert len(fates["kill"]) > 5
        # A killed process fails its whole chunk, including messages it had finished.
        unsettled_ok = fates["ok"] - cleaned - queue.abandoned["cleanup"]
        assert len(unsettled_ok) <= (bulk - 1) * len(fates["kill"]) + bulk * killer.kills


@pytest.mark.timeout(300)
def test_partial_failure_bulk_handler_loses_nothing(tmp_path: Any, thread_mode: bool) -> None:
    trace_path = str(tmp_path / "trace")
    kill_rate = 0.0 if thread_mode else 0.005
    handler = functools.partial(robust_handlers.chaotic_bulk, trace_path, SEED, 0.08, kill_rate)
    queue = AuditedQueue(SEED, flaky_cleanup=0.002, doomed_reject=0.01)

    if thread_mode:
        stats = run_to_the_end(queue, handler, thread_mode, bulk=5)
    else:
        with ChildKiller(SEED) as killer:
            stats = run_to_the_end(queue, handler, thread_mode, bulk=5)
        assert killer.kills > 3

    fates = check_ledger(queue, stats, trace_path)
    cleaned = {d for d, kinds in queue.settled.items() if kinds == ["cleanup"]}
    if thread_mode:
        # PartialFailure fails exactly the named messages; the rest of the chunk succeeded.
        assert cleaned == fates["ok"] - queue.abandoned["cleanup"]
    else:
        assert fates["kill"]
        assert (
            len(fates["ok"] - cleaned - queue.abandoned["cleanup"])
            <= 4 * len(fates["kill"]) + 5 * killer.kills
        )
