"""W6 memory: peak RSS consuming 100k vs 1M lazily made messages; bounded in flight = flat."""

from __future__ import annotations

import os
from typing import Any

from . import _runners
from ._harness import Plan, Row, Target
from ._queues import CountingQueue
from .w1_overhead import noop

WORKERS = 2
HANDLERS = 2


def plan(quick: bool) -> Plan:
    small, large = (20_000, 200_000) if quick else (100_000, 1_000_000)
    spec = {"module": "w6_memory"}
    consumer = f"max_workers={WORKERS}, max_handlers={HANDLERS}, bulk 10"
    rows = [
        Row("bare_small", "bare loop", "1 thread", small, {**spec, "runner": "bare"}),
        Row("bare_large", "bare loop", "1 thread", large, {**spec, "runner": "bare"}),
        Row("small", "Consumer", consumer, small, {**spec, "runner": "consumer"}),
        Row("large", "Consumer", consumer, large, {**spec, "runner": "consumer"}),
    ]
    return Plan(
        "W6",
        f"W6 memory: peak RSS for {small:,} vs {large:,} messages (no-op handler)",
        rows,
        references=[],
        targets=[
            Target(f"W6 RSS growth {small:,} -> {large:,}", "large", "small", 20, "rss_growth")
        ],
        notes=[
            "Each run is a fresh process (ru_maxrss). The queue makes messages on demand; its "
            "only per-message state is the 1-byte checklist of cleanups (about 1 MiB per 1M "
            "messages), which the bare loop's growth shows. The peak may be reached while "
            "importing, before the run: `RSS at the end` is what the run itself holds."
        ],
    )


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    queue = CountingQueue(spec["n"])
    problems: list[str] = []
    if spec["runner"] == "bare":
        seconds = _runners.bare_loop(queue, noop)
    else:
        seconds, stats = _runners.consumer(
            queue, noop, max_workers=WORKERS, max_handlers=HANDLERS, messages_bulk_size=10
        )
        problems += _runners.check_statistics(stats, queue.n)
    problems += queue.problems()
    notes = {"RSS at the end (MiB)": round(_rss_now() / 2**20, 1)}
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


def _rss_now() -> int:
    """Resident bytes now (ru_maxrss is the peak so far, which may predate the run)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
