"""W1 overhead: a no-op handler over an in-memory queue, so all that is measured is plumbing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from . import _runners
from ._harness import Plan, Row, Target
from ._queues import CountingQueue

TPE_THREADS = 2  # its best on 2 cores: more threads only add GIL hand-overs
WORKERS, HANDLERS = 1, 4  # one poller keeps up with a no-op handler; 4 slots absorb hand-overs
CPUS = os.cpu_count() or 1  # the consumer's defaults: max_workers = max_handlers = cpu_count()


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def plan(quick: bool) -> Plan:
    n = 50_000 if quick else 200_000
    spec = {"module": "w1_overhead"}
    consumer = f"max_workers={WORKERS}, max_handlers={HANDLERS}"
    tuned = {**spec, "runner": "consumer", "workers": WORKERS, "handlers": HANDLERS}
    rows = [
        Row(
            "bare",
            "bare loop",
            "1 thread: get 10, handle, cleanup 10",
            n,
            {**spec, "runner": "bare"},
        ),
        Row(
            "tpe",
            "naive ThreadPoolExecutor",
            f"max_workers={TPE_THREADS}, 1 submit/message",
            n,
            {**spec, "runner": "tpe"},
        ),
        Row(
            "default",
            "Consumer",
            f"defaults (max_workers=max_handlers={CPUS}), bulk 1",
            n,
            {**spec, "runner": "consumer", "workers": CPUS, "handlers": CPUS, "bulk": 1},
        ),
        Row("bulk1", "Consumer", f"{consumer}, bulk 1", n, {**tuned, "bulk": 1}),
        Row("bulk10", "Consumer", f"{consumer}, bulk 10", n, {**tuned, "bulk": 10}),
    ]
    return Plan(
        "W1",
        "W1 overhead: no-op handler, in-memory queue (get() returns up to 10)",
        rows,
        references=["tpe", "bare"],
        targets=[
            Target("W1 bulk 1 vs naive ThreadPoolExecutor", "bulk1", "tpe", 1.0),
            Target("W1 bulk 10 vs naive ThreadPoolExecutor", "bulk10", "tpe", 3.0),
        ],
        notes=[
            "The naive executor queues every message at once (its peak RSS is that backlog), "
            "and its speed swings widely from run to run with how far the submitting thread "
            "gets ahead of its workers; hence 5 runs here."
        ],
        runs=5,
    )


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    queue = CountingQueue(spec["n"])
    problems: list[str] = []
    if spec["runner"] == "bare":
        seconds = _runners.bare_loop(queue, noop)
    elif spec["runner"] == "tpe":
        seconds = _runners.naive_executor(queue, noop, TPE_THREADS)
    else:
        seconds, stats = _runners.consumer(
            queue,
            noop,
            max_workers=spec["workers"],
            max_handlers=spec["handlers"],
            messages_bulk_size=spec["bulk"],
        )
        problems += _runners.check_statistics(stats, queue.n)
    problems += queue.problems()
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems)}
