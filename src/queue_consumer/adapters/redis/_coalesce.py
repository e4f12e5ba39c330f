"""Group commit: settles that arrive while one is on the wire share the next round trip.

With ``messages_bulk_size=1`` every handler thread cleans up one entry at a time; sent one
by one that is a round trip per message. A :class:`Coalescer` sends the first call at once
(no added latency when there is no contention); calls that come while it is in flight wait
and go together in the next one. Each call still returns only after its own items were
applied, with its own results, or raises the error of the round trip it was part of.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


class _Call(Generic[T, R]):
    __slots__ = ("error", "items", "lead", "ready", "results")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.ready = threading.Event()
        self.lead = False
        self.results: Sequence[R] = ()
        self.error: BaseException | None = None


class Coalescer(Generic[T, R]):
    """``coalescer(items) -> results`` (one per item), sharing ``flush`` round trips.

    ``flush(items) -> results`` must return one result per item, in order.
    """

    def __init__(self, flush: Callable[[list[T]], Sequence[R]]) -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._queue: list[_Call[T, R]] = []
        self._leading = False
        self.round_trips = 0  #: flushes so far
        self.calls = 0  #: calls so far

    def __call__(self, items: Sequence[T]) -> Sequence[R]:
        call: _Call[T, R] = _Call(items)
        with self._lock:
            self.calls += 1
            self._queue.append(call)
            lead = not self._leading
            self._leading = True
        if not lead:
            call.ready.wait()
            if not call.lead:  # another call's round trip carried it
                return _outcome(call)
        with self._lock:
            batch, self._queue = self._queue, []
            self.round_trips += 1
        try:
            results: Sequence[R] = self._flush([item for c in batch for item in c.items])
            error: BaseException | None = None
        except BaseException as exc:  # every call of the batch sees the error
            results, error = (), exc
        start = 0
        for waiting in batch:
            waiting.results = results[start : start + len(waiting.items)]
            waiting.error = error
            start += len(waiting.items)
            if waiting is not call:
                waiting.ready.set()
        with self._lock:
            if self._queue:  # the next round trip is led by the oldest waiting call
                following = self._queue[0]
                following.lead = True
                following.ready.set()
            else:
                self._leading = False
        return _outcome(call)


def _outcome(call: _Call[T, R]) -> Sequence[R]:
    if call.error is not None:
        raise call.error
    return call.results
