"""Helpers for testing code that uses queue_consumer: deadline-bound waits.

Never sleep and hope: wait for the condition, with a deadline that fails loudly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Return as soon as ``predicate()`` is true; raise ``TimeoutError`` after ``timeout``.

    >>> wait_until(lambda: True)
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            detail = f": {message}" if message else ""
            raise TimeoutError(f"condition not met within {timeout}s{detail}")
        time.sleep(interval)
