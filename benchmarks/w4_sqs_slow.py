"""W4 SQS, 20 ms handler, 32 slots: the consumer against a bare boto3 loop of 32 threads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from . import _sqs
from ._harness import Plan, Row, Target
from .w3_sqs_noop import NOTE

SLOTS = 32
SLEEP = 0.020
environment = _sqs.moto_server


def slow(messages: Iterator[Any]) -> None:
    for _ in messages:
        time.sleep(SLEEP)


def plan(quick: bool) -> Plan:
    n = 300 if quick else 1_000
    spec = {"module": "w4_sqs_slow"}
    adapter = {**spec, "runner": "consumer", "adapter": True}
    rows = [
        Row(
            "bare",
            "bare boto3 loop",
            f"{SLOTS} threads: receive 10, handle, delete batch",
            n,
            {**spec, "runner": "bare", "threads": SLOTS},
        ),
        Row(
            "consumer",
            "Consumer",
            f"max_workers={SLOTS}, max_handlers={SLOTS}, bulk 10",
            n,
            {**spec, "runner": "consumer", "threads": SLOTS, "handlers": SLOTS, "bulk": 10},
        ),
        Row(
            "adapter",
            "Consumer + SQSQueue adapter",
            f"max_workers={SLOTS}, max_handlers={SLOTS}, bulk 10",
            n,
            {**adapter, "threads": SLOTS, "handlers": SLOTS, "bulk": 10},
        ),
        Row(
            "few",
            "Consumer, seed-style queue",
            f"max_workers=4, max_handlers={SLOTS}, bulk 1",
            n,
            {**spec, "runner": "consumer", "threads": 4, "handlers": SLOTS, "bulk": 1},
        ),
        Row(
            "adapter1",
            "Consumer + SQSQueue adapter",
            f"max_workers=4, max_handlers={SLOTS}, bulk 1",
            n,
            {**adapter, "threads": 4, "handlers": SLOTS, "bulk": 1},
        ),
    ]
    return Plan(
        "W4",
        f"W4 SQS (moto server), handler sleeps {SLEEP * 1000:.0f} ms per message, {SLOTS} slots",
        rows,
        references=["bare"],
        targets=[
            Target("W4 SQS 20 ms vs bare boto3 loop", "consumer", "bare", 0.90),
            Target("W4 SQS 20 ms, with the SQSQueue adapter", "adapter", "bare", 0.90),
            Target("W4 SQS 20 ms, bulk 1 (seed-style queue)", "few", "bare", 0.90),
            Target("W4 SQS 20 ms, bulk 1 with the SQSQueue adapter", "adapter1", "bare", 0.90),
        ],
        notes=[NOTE, "moto is the bottleneck here and its speed varies from run to run: 5 runs."],
        runs=5,
    )


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    return _sqs.trial(spec, slow)
