"""W2 I/O-bound: each message sleeps 5 ms in its handler, 32 handler slots."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from . import _runners
from ._harness import Plan, Row, Target
from ._queues import CountingQueue

SLOTS = 32
SLEEP = 0.005
WORKERS = 2


def sleepy(messages: Iterator[Any]) -> None:
    for _ in messages:
        time.sleep(SLEEP)


def plan(quick: bool) -> Plan:
    n = 5_000 if quick else 20_000
    spec = {"module": "w2_io"}
    consumer = f"max_workers={WORKERS}, max_handlers={SLOTS}"
    rows = [
        Row("ceiling", "ceiling", f"{SLOTS} slots / {SLEEP * 1000:.0f} ms", n, None, SLOTS / SLEEP),
        Row(
            "tpe",
            "naive ThreadPoolExecutor",
            f"max_workers={SLOTS}, 1 submit/message",
            n,
            {**spec, "runner": "tpe"},
        ),
        Row(
            "bulk1", "Consumer", f"{consumer}, bulk 1", n, {**spec, "runner": "consumer", "bulk": 1}
        ),
        Row(
            "bulk10",
            "Consumer",
            f"{consumer}, bulk 10",
            n,
            {**spec, "runner": "consumer", "bulk": 10},
        ),
    ]
    return Plan(
        "W2",
        f"W2 I/O-bound: handler sleeps {SLEEP * 1000:.0f} ms per message, {SLOTS} slots",
        rows,
        references=["ceiling"],
        targets=[Target("W2 bulk 1 vs ceiling 32 / 5 ms", "bulk1", "ceiling", 0.90)],
        notes=[
            "time.sleep(0.005) itself sleeps a little longer than 5 ms (timer slack), so the "
            "ceiling is slightly out of reach of any runner."
        ],
    )


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    queue = CountingQueue(spec["n"])
    problems: list[str] = []
    if spec["runner"] == "tpe":
        seconds = _runners.naive_executor(queue, sleepy, SLOTS)
    else:
        seconds, stats = _runners.consumer(
            queue, sleepy, max_workers=WORKERS, max_handlers=SLOTS, messages_bulk_size=spec["bulk"]
        )
        problems += _runners.check_statistics(stats, queue.n)
    problems += queue.problems()
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems)}
