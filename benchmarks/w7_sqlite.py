"""W7 SQLite, no-op handler: bulk 1 against bulk 10, and the write transactions each makes.

Every ``get()`` is one write transaction (it leases a batch); before settles were batched,
every chunk's ``cleanup`` was one more, so bulk 1 paid ~1.1 transactions per message and
bulk 10 ~0.2. Batched settles make the two about equal.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import _runners
from ._harness import Plan, Row, Target

CPUS = os.cpu_count() or 1


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def plan(quick: bool) -> Plan:
    n = 2_000 if quick else 10_000
    spec = {"module": "w7_sqlite"}
    rows = [
        Row(
            "bare",
            "bare loop",
            "1 thread: get 10, handle, cleanup 10",
            n,
            {**spec, "runner": "bare"},
        ),
        Row(
            "defaults",
            "Consumer, the seed's defaults",
            f"max_workers=max_handlers=cpu_count() ({CPUS}), bulk 1",
            n,
            {**spec, "runner": "consumer", "workers": CPUS, "handlers": CPUS, "bulk": 1},
        ),
        Row(
            "defaults10",
            "Consumer, the seed's defaults but bulk 10",
            f"max_workers=max_handlers=cpu_count() ({CPUS}), bulk 10",
            n,
            {**spec, "runner": "consumer", "workers": CPUS, "handlers": CPUS, "bulk": 10},
        ),
        Row(
            "bulk1",
            "Consumer",
            "max_workers=1, max_handlers=4, bulk 1",
            n,
            {**spec, "runner": "consumer", "workers": 1, "handlers": 4, "bulk": 1},
        ),
        Row(
            "bulk10",
            "Consumer",
            "max_workers=1, max_handlers=4, bulk 10",
            n,
            {**spec, "runner": "consumer", "workers": 1, "handlers": 4, "bulk": 10},
        ),
    ]
    return Plan(
        "W7",
        "W7 SQLite file queue, no-op handler (get() leases up to 10)",
        rows,
        references=["defaults10", "bare"],
        targets=[
            Target(
                "W7 SQLite bulk 1 vs bulk 10, the seed's defaults", "defaults", "defaults10", 0.80
            ),
            Target("W7 SQLite bulk 1 vs bulk 10, 1 worker 4 handlers", "bulk1", "bulk10", 0.80),
        ],
        notes=[
            "`writes/msg` counts the queue's write transactions (one per get() and one per "
            "settle call) while the clock ran."
        ],
    )


class BenchQueue:
    """A SQLiteQueue with the benchmark queue's ``done`` / ``finished_at`` / ``exhausted``."""

    def __init__(self, path: str, n: int) -> None:
        from queue_consumer.adapters.sqlite import SQLiteQueue

        self.sqlite = SQLiteQueue(path, wait_time=0, visibility_timeout=60)
        self.sqlite.put_many(range(n))
        self.n = n
        self.done = threading.Event()
        self.finished_at = 0.0
        self.writes = 0
        self._cleaned = 0
        self._lock = threading.Lock()
        self.exhausted = False

    def get(self) -> list[Any]:
        messages = self.sqlite.get()
        with self._lock:
            self.writes += 1
            if not messages and self._cleaned >= self.n:
                self.exhausted = True
        return messages

    def cleanup(self, messages: list[Any]) -> None:
        self.sqlite.cleanup(messages)
        with self._lock:
            self.writes += 1
            self._cleaned += len(messages)
            if self._cleaned >= self.n and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.exhausted = True
                self.done.set()

    def problems(self) -> list[str]:
        depth = self.sqlite.stats()["depth"]
        return [f"{depth} messages left in the queue"] if depth else []


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        queue = BenchQueue(os.path.join(folder, "bench.db"), spec["n"])
        problems: list[str] = []
        try:
            if spec["runner"] == "bare":
                seconds = _runners.bare_loop(queue, noop)
            else:
                seconds, stats = _runners.consumer(
                    queue,
                    noop,
                    max_workers=spec["workers"],
                    max_handlers=spec["handlers"],
                    messages_bulk_size=spec["bulk"],
                )
                problems += _runners.check_statistics(stats, queue.n)
            writes = queue.writes
            problems += queue.problems()
        finally:
            queue.sqlite.close()
    notes = {"writes/msg": round(writes / spec["n"], 2)}
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}
