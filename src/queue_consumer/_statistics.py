"""Counters of what a consumer did, and the immutable snapshot users, metrics and health read.

Counters are updated once per chunk or settle call (not per message) under one lock, so a
consistent snapshot is cheap and the hot path stays short. ``succeeded``, ``failed`` and
``released`` count messages when their settle call is made (settles may be batched), so
``in_flight`` = received - settled includes the messages whose settle is still pending.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Statistics:
    """A consistent snapshot of a consumer's counters and state (``Consumer.statistics()``)."""

    get_calls: int = 0  #: times ``queue.get()`` returned or raised
    received: int = 0  #: messages ``get()`` returned
    started: int = 0  #: messages handed to a handler
    succeeded: int = 0  #: messages sent to ``cleanup`` (their handler succeeded)
    failed: int = 0  #: messages sent to ``reject`` or ``dead_letter`` (their handler failed)
    released: int = 0  #: messages sent to ``release`` (fetched, never tried)
    dead_lettered: int = 0  #: of ``failed``, those sent to ``dead_letter`` (PermanentFailure)
    in_flight: int = 0  #: messages fetched and not yet settled
    settles_pending: int = 0  #: of ``in_flight``, handled and waiting in a settle batch
    workers_revived: int = 0  #: dead workers that ``supervise`` started again
    handlers_stuck: int = 0  #: handlers found running past ``handler_timeout``
    errors: int = 0  #: errors of ``get`` / ``cleanup`` / ``reject`` / ``release`` / workers
    handler_errors: int = 0  #: chunks whose handler raised or left messages untaken
    last_error: str | None = None  #: the most recent of those errors, or a handler's
    workers_alive: int = 0  #: worker threads running now
    workers_total: int = 0  #: ``max_workers``
    handlers_busy: int = 0  #: handler slots running a chunk now
    handlers_total: int = 0  #: ``max_handlers``
    jobs_parked: int = 0  #: fetched jobs waiting for a free handler slot
    in_get_for: float = 0.0  #: seconds the longest ``get()`` now running has run
    last_get_at: float | None = None  #: ``time.time()`` of the last completed ``get()``
    last_get_ok: bool | None = None  #: whether that ``get()`` succeeded
    last_settled_at: float | None = None  #: ``time.time()`` of the last settle call
    supervised_at: float | None = None  #: ``time.time()`` of the last supervise round


class Counters:
    """Thread-safe counters behind ``Statistics``: mutated under a lock, read as a copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_COUNTERS, 0)
        self._last_error: str | None = None
        self._last_get_at: float | None = None
        self._last_get_ok: bool | None = None
        self._last_settled_at: float | None = None
        self.supervised_at: float | None = None

    def add(self, **deltas: int) -> None:
        values = self._values
        with self._lock:
            for name, delta in deltas.items():
                values[name] += delta

    def got(self, count: int, ok: bool) -> None:
        """A ``get()`` returned ``count`` messages (or raised: ``ok`` False)."""
        now = time.time()
        with self._lock:
            self._values["get_calls"] += 1
            self._values["received"] += count
            self._last_get_at, self._last_get_ok = now, ok

    def started(self, count: int) -> None:
        with self._lock:
            self._values["started"] += count

    def settled(self, stage: str, count: int) -> None:
        """A settle call of ``stage`` was made for ``count`` messages (even if it failed)."""
        now = time.time()
        with self._lock:
            self._values[_STAGE_COUNTER[stage]] += count
            if stage == "dead_letter":
                self._values["dead_lettered"] += count
            self._last_settled_at = now

    def error(self, text: str, *, handler: bool = False) -> None:
        """Remember ``text`` as the last error; count it as a queue or a handler error."""
        with self._lock:
            self._last_error = text
            self._values["handler_errors" if handler else "errors"] += 1

    def snapshot(self, **state: int | float) -> Statistics:
        """The counters, with the consumer's current ``state`` (slots busy, workers alive...)."""
        with self._lock:
            values = self._values
            settled = values["succeeded"] + values["failed"] + values["released"]
            return Statistics(
                **values,
                in_flight=values["received"] - settled,
                last_error=self._last_error,
                last_get_at=self._last_get_at,
                last_get_ok=self._last_get_ok,
                last_settled_at=self._last_settled_at,
                supervised_at=self.supervised_at,
                **state,  # type: ignore[arg-type]
            )


_STAGE_COUNTER = {
    "cleanup": "succeeded",
    "reject": "failed",
    "dead_letter": "failed",
    "release": "released",
}
_COUNTERS = (
    "get_calls",
    "received",
    "started",
    "succeeded",
    "failed",
    "released",
    "dead_lettered",
    "workers_revived",
    "handlers_stuck",
    "errors",
    "handler_errors",
)
