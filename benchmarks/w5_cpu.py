"""W5 CPU-bound: each message burns ~1 ms of pure-Python CPU; threads vs processes."""

from __future__ import annotations

import functools
import multiprocessing
import os
import resource
import time
from collections.abc import Iterator
from typing import Any

from . import _runners
from ._harness import Plan, Row, Target
from ._queues import CountingQueue

CPUS = os.cpu_count() or 1
WORK = 0.001  # seconds of CPU per message


def burn(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def burner(messages: Iterator[Any], iterations: int) -> None:
    """Module level, so that process mode can pickle it (bound with functools.partial)."""
    for _ in messages:
        burn(iterations)


def calibrate() -> int:
    """Iterations of ``burn`` that take ``WORK`` seconds here (the fastest of a few tries)."""
    iterations = 20_000
    best = min(_timed(iterations) for _ in range(5))
    return max(1, round(iterations * WORK / best))


def _timed(iterations: int) -> float:
    started = time.perf_counter()
    burn(iterations)
    return time.perf_counter() - started


def plan(quick: bool) -> Plan:
    n = 1_000 if quick else 4_000
    spec = {"module": "w5_cpu", "iterations": calibrate()}
    base = f"max_workers=1, max_handlers={CPUS}"
    rows = [
        Row("bare", "bare loop", "1 thread", n, {**spec, "runner": "bare"}),
        Row(
            "threads",
            "Consumer, threads",
            f"{base}, bulk 1",
            n,
            {**spec, "runner": "consumer", "bulk": 1, "threads": True},
        ),
        Row(
            "processes",
            "Consumer, processes",
            f"{base}, bulk 1",
            n,
            {**spec, "runner": "consumer", "bulk": 1, "threads": False},
        ),
        Row(
            "processes10",
            "Consumer, processes",
            f"{base}, bulk 10",
            n,
            {**spec, "runner": "consumer", "bulk": 10, "threads": False},
        ),
    ]
    return Plan(
        "W5",
        f"W5 CPU-bound: ~{WORK * 1000:.0f} ms of pure-Python CPU per message, on {CPUS} cores",
        rows,
        references=["threads"],
        targets=[Target("W5 processes vs threads (bulk 1)", "processes", "threads", 1.6)],
        notes=[
            f"Calibrated: {spec['iterations']:,} loop iterations = {WORK * 1000:.0f} ms on this "
            "machine. Times include starting the handler processes (forkserver). `cores used`: "
            "CPU of the runner and its handler processes per second of the run; `other load`: "
            "the rest of the machine's busy CPU meanwhile (other programs on a shared host)."
        ],
    )


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    queue = CountingQueue(spec["n"])
    handler = functools.partial(burner, iterations=spec["iterations"])
    problems: list[str] = []
    usage: dict[str, float] = {}

    def measure() -> None:  # before shutdown, while the handler processes still live
        usage["ours"] = _own_cpu() + sum(_cpu(p.pid) for p in multiprocessing.active_children())
        usage["machine"] = _machine_busy()

    before = _own_cpu(), _machine_busy()
    if spec["runner"] == "bare":
        seconds = _runners.bare_loop(queue, handler)
        measure()
    else:
        seconds, stats = _runners.consumer(
            queue,
            handler,
            drain=measure,
            max_workers=1,
            max_handlers=CPUS,
            messages_bulk_size=spec["bulk"],
            with_thread_executor=spec["threads"],
        )
        problems += _runners.check_statistics(stats, queue.n)
    problems += queue.problems()
    ours = (usage["ours"] - before[0]) / seconds
    others = (usage["machine"] - before[1]) / seconds - ours
    notes = {"cores used": round(ours, 2), "other load (cores)": round(max(others, 0), 2)}
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu(pid: int | None) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds all processes of the machine spent busy so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
