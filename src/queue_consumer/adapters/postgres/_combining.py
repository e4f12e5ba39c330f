"""Merge concurrent deletes of one queue into one statement: fewer round trips and commits.

With ``messages_bulk_size=1`` every handler slot cleans up after every message; one DELETE
(one commit, one WAL flush) per message makes the server's flush the bound. Here the
first caller runs the statement for everyone waiting at that moment; callers that arrive
while it runs wait, and the first of them runs the next statement for all of them. No
caller waits for a timer: a lone caller runs at once, as it would without this, and each
caller still returns only when its own keys were deleted (or raises the statement's
error), so ``cleanup`` stays synchronous and fenced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable
from typing import Generic, TypeVar

__all__ = ["Combiner"]

K = TypeVar("K", bound=Hashable)


class _Call(Generic[K]):
    __slots__ = ("done", "error", "keys", "lead", "result")

    def __init__(self, keys: list[K]) -> None:
        self.keys = keys
        self.done = threading.Event()
        self.lead = False  # woken to run the next statement, not with a result
        self.result: set[K] = set()
        self.error: BaseException | None = None


class Combiner(Generic[K]):
    """``combiner(keys)`` runs ``apply(all waiting keys)`` and returns which of *its* keys
    ``apply`` reported done. At most one ``apply`` runs at a time."""

    def __init__(self, apply: Callable[[list[K]], Collection[K]]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._waiting: list[_Call[K]] = []
        self._running = False

    def __call__(self, keys: list[K]) -> set[K]:
        call: _Call[K] = _Call(keys)
        with self._lock:
            if self._running:
                self._waiting.append(call)
            else:
                self._running = True
                call.lead = True
        if not call.lead:
            call.done.wait()
        if call.lead:  # run the statement for every call waiting now, this one included
            self._run(call)
        if call.error is not None:
            raise call.error
        return call.result

    def _run(self, call: _Call[K]) -> None:
        with self._lock:
            batch, self._waiting = [call, *self._waiting], []
        try:
            done = set(self._apply([key for c in batch for key in c.keys]))
        except BaseException as exc:  # each caller raises it (and its consumer retries)
            for c in batch:
                c.error = exc
        else:
            for c in batch:
                c.result = {key for key in c.keys if key in done}
        with self._lock:
            if self._waiting:  # hand over: the first waiter runs the next statement
                successor = self._waiting.pop(0)
                successor.lead = True
                successor.done.set()
            else:
                self._running = False
        for c in batch:
            c.lead = False
            if c is not call:
                c.done.set()
