"""W3 SQS, no-op handler: the consumer against a bare boto3 loop with as many polling threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from . import _sqs
from ._harness import Plan, Row, Target

THREADS = 4
SLOTS = 32
CPUS = os.cpu_count() or 1
environment = _sqs.moto_server


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def plan(quick: bool) -> Plan:
    n = 300 if quick else 1_000
    spec = {"module": "w3_sqs_noop", "threads": THREADS}
    # One poller, as the bare 1-thread loop: the same receives, so requests/msg compare.
    one = {**spec, "runner": "consumer", "threads": 1, "handlers": 4}
    rows = [
        Row(
            "bare",
            "bare boto3 loop",
            f"{THREADS} threads: receive 10, handle, delete batch",
            n,
            {**spec, "runner": "bare"},
        ),
        Row(
            "bare1",
            "bare boto3 loop",
            "1 thread: receive 10, handle, delete batch",
            n,
            {**spec, "runner": "bare", "threads": 1},
        ),
        Row(
            "defaults",
            "Consumer, the seed's defaults",
            f"max_workers=max_handlers=cpu_count() ({CPUS}), bulk 1",
            n,
            {**spec, "runner": "consumer", "threads": CPUS, "handlers": CPUS, "bulk": 1},
        ),
        Row(
            "bulk1",
            "Consumer, seed-style queue",
            "max_workers=1, max_handlers=4, bulk 1",
            n,
            {**one, "bulk": 1},
        ),
        Row(
            "adapter1",
            "Consumer + SQSQueue adapter",
            "max_workers=1, max_handlers=4, bulk 1",
            n,
            {**one, "bulk": 1, "adapter": True},
        ),
        Row(
            "consumer",
            "Consumer",
            f"max_workers={THREADS}, max_handlers={SLOTS}, bulk 10",
            n,
            {**spec, "runner": "consumer", "handlers": SLOTS, "bulk": 10},
        ),
        Row(
            "adapter",
            "Consumer + SQSQueue adapter",
            f"max_workers={THREADS}, max_handlers={SLOTS}, bulk 10",
            n,
            {**spec, "runner": "consumer", "handlers": SLOTS, "bulk": 10, "adapter": True},
        ),
    ]
    return Plan(
        "W3",
        "W3 SQS (moto server), no-op handler",
        rows,
        references=["bare", "bare1"],
        targets=[
            Target("W3 SQS no-op vs bare boto3 loop", "consumer", "bare", 0.90),
            Target("W3 SQS no-op, with the SQSQueue adapter", "adapter", "bare", 0.90),
            Target("W3 SQS no-op, bulk 1 vs the 1-thread bare loop", "bulk1", "bare1", 0.90),
            Target("W3 SQS no-op, bulk 1 SQSQueue vs 1-thread bare", "adapter1", "bare1", 0.90),
        ],
        notes=[NOTE],
    )


NOTE = (
    f"Messages are spread over rounds: {_sqs.PER_QUEUE}-message queues filled before the "
    "clock starts (moto scans a whole queue per received message). `moto CPU %` is the "
    "server's CPU use during the run (100 = one core); `moto lost deletes` are messages "
    "moto brought back although they were deleted (already handled, so not duplicates); "
    "`requests/msg` counts every HTTP request to SQS while the clock ran (a bare loop makes "
    "0.2: one receive and one delete batch per 10 messages)."
)


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    return _sqs.trial(spec, noop)
