"""W3 SQS, no-op handler: the consumer against a bare boto3 loop with as many polling threads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import _sqs
from ._harness import Plan, Row, Target

THREADS = 4
SLOTS = 32
environment = _sqs.moto_server


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def plan(quick: bool) -> Plan:
    n = 300 if quick else 1_000
    spec = {"module": "w3_sqs_noop", "threads": THREADS}
    rows = [
        Row(
            "bare",
            "bare boto3 loop",
            f"{THREADS} threads: receive 10, handle, delete batch",
            n,
            {**spec, "runner": "bare"},
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
        references=["bare"],
        targets=[
            Target("W3 SQS no-op vs bare boto3 loop", "consumer", "bare", 0.90),
            Target("W3 SQS no-op, with the SQSQueue adapter", "adapter", "bare", 0.90),
        ],
        notes=[NOTE],
    )


NOTE = (
    f"Messages are spread over rounds: {_sqs.PER_QUEUE}-message queues filled before the "
    "clock starts (moto scans a whole queue per received message). `moto CPU %` is the "
    "server's CPU use during the run (100 = one core); `moto lost deletes` are messages "
    "moto brought back although they were deleted (already handled, so not duplicates)."
)


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    return _sqs.trial(spec, noop)
