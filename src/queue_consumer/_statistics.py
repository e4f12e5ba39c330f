"""Counters of what a consumer did, and the immutable snapshot users read.

Counters are updated once per chunk (not per message) under one lock, so reading a
consistent snapshot is cheap and the hot path stays short.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Statistics:
    """A consistent snapshot of a consumer's counters (``Consumer.statistics()``)."""

    get_calls: int = 0  #: times ``queue.get()`` was called
    received: int = 0  #: messages ``get()`` returned
    started: int = 0  #: messages handed to a handler
    succeeded: int = 0  #: messages whose handler succeeded (sent to ``cleanup``)
    failed: int = 0  #: messages whose handler failed (sent to ``reject``)
    released: int = 0  #: messages fetched but never handled (sent to ``release``)
    in_flight: int = 0  #: messages fetched and not yet settled
    workers_revived: int = 0  #: dead workers that ``supervise`` started again
    handlers_stuck: int = 0  #: handlers found running past ``handler_timeout``
    errors: int = 0  #: errors of ``get`` / ``cleanup`` / ``reject`` / ``release``
    last_error: str | None = None  #: the most recent of those errors, or a handler's


class Counters:
    """Thread-safe counters behind ``Statistics``: mutated under a lock, read as a copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_COUNTERS, 0)
        self._last_error: str | None = None

    def add(self, **deltas: int) -> None:
        values = self._values
        with self._lock:
            for name, delta in deltas.items():
                values[name] += delta

    def started(self, count: int) -> None:
        """``add(started=count)`` without the keyword dict: once per chunk, on the hot path."""
        with self._lock:
            self._values["started"] += count

    def settled(self, succeeded: int, failed: int) -> None:
        """``add(succeeded=..., failed=...)`` for the hot path."""
        values = self._values
        with self._lock:
            values["succeeded"] += succeeded
            values["failed"] += failed

    def error(self, text: str, *, count: bool = True) -> None:
        """Remember ``text`` as the last error; count it unless it is a handler's."""
        with self._lock:
            self._last_error = text
            if count:
                self._values["errors"] += 1

    def snapshot(self) -> Statistics:
        with self._lock:
            values = self._values
            settled = values["succeeded"] + values["failed"] + values["released"]
            in_flight = values["received"] - settled
            return Statistics(**values, in_flight=in_flight, last_error=self._last_error)


_COUNTERS = tuple(name for name in Statistics.__slots__ if name not in ("in_flight", "last_error"))
