"""Fixtures for the observability tests: SQLite queues, HTTP probes, metric scrapes."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_consumer.adapters.sqlite import SQLiteQueue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))

with contextlib.suppress(pytest.skip.Exception):  # SQS fixtures (moto) for round trips
    from sqs_server import make_queue, moto_endpoint, sqs_client, sqs_env  # noqa: F401


@pytest.fixture
def make_sqlite(tmp_path: Path) -> Iterator[Callable[..., SQLiteQueue]]:
    """``make_sqlite(**options)``: a fresh SQLite queue in the test's temp dir."""
    made: list[SQLiteQueue] = []

    def make(cls: type[SQLiteQueue] = SQLiteQueue, **options: Any) -> SQLiteQueue:
        name = f"jobs-{uuid.uuid4().hex[:6]}"
        queue = cls(str(tmp_path / "jobs.db"), queue=name, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()
