"""Core tests: no test may leave a consumer thread running (CPython's threading_cleanup)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

_PREFIX = "queue_consumer-"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.name.startswith(_PREFIX)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {sorted(t.name for t in leaked)}"
