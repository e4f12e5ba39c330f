"""An in-memory queue with SQS-like visibility timeouts, for tests, examples and demos.

A message that is taken by ``get()`` is leased: invisible to other ``get()`` calls until it
is cleaned up, rejected, released or its lease expires, when it comes back. Each delivery
carries a new receipt, so settling a stale delivery (whose lease expired and which was
delivered again) does nothing: what a late handler does cannot delete a message twice.

A failed (rejected) message comes back after ``reject_delay`` (1 s by default), so a handler
that always fails is a slow retry, not a hot loop; ``reject_delay=0`` retries at once.
There is no lease heartbeat (it would cost every message two more lock round trips):
``extend(messages)`` renews leases by hand, and a fetched message waiting for a free handler
slot keeps its first lease, so size ``max_handlers`` to take a whole ``get()`` at once
(``max_handlers >= max_workers * max_messages / messages_bulk_size``) or keep
``visibility_timeout`` (30 s) above the time a batch takes.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _checks as checks
from ._options import OptionTable, parse_query

if TYPE_CHECKING:
    from .._protocols import (
        Queue,
        SupportsCleanup,
        SupportsExtend,
        SupportsReject,
        SupportsRelease,
        SupportsStats,
    )

__all__ = ["MemoryMessage", "MemoryQueue", "from_url"]


@dataclass(frozen=True)
class MemoryMessage:
    """One delivery of a message: ``receipt`` changes with every delivery."""

    id: int
    body: Any
    receipt: int
    receive_count: int

    @property
    def delivery_count(self) -> int:
        """Deliveries so far, 1 on the first."""
        return self.receive_count


class MemoryQueue:
    """A thread-safe in-process queue with visibility-timeout semantics.

    >>> queue = MemoryQueue(visibility_timeout=30)
    >>> queue.put_many(["a", "b"])
    [1, 2]
    >>> [m.body for m in queue.get()]
    ['a', 'b']
    """

    def __init__(
        self,
        visibility_timeout: float = 30.0,
        max_messages: int = 10,
        reject_delay: float = 1.0,
    ) -> None:
        self.visibility_timeout = checks.seconds(
            "visibility_timeout", visibility_timeout, positive=True
        )
        self.max_messages = checks.count("max_messages", max_messages)
        self.reject_delay = checks.seconds("reject_delay", reject_delay)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._receipts = itertools.count(1)
        self._bodies: dict[int, Any] = {}
        self._receive_counts: dict[int, int] = {}
        self._visible: deque[int] = deque()
        self._delayed: list[tuple[float, int]] = []  # heap of (visible at, id)
        # id -> (receipt of the live delivery, deadline). One visibility timeout for all,
        # so insertion order is deadline order: the first lease is the next to expire.
        self._leases: OrderedDict[int, tuple[int, float]] = OrderedDict()
        #: messages deleted by ``cleanup`` (each message at most once)
        self.deleted = 0

    def put(self, body: Any) -> int:
        return self.put_many([body])[0]

    def put_many(self, bodies: Iterable[Any]) -> list[int]:
        with self._lock:
            ids = []
            for body in bodies:
                message_id = next(self._ids)
                self._bodies[message_id] = body
                self._receive_counts[message_id] = 0
                self._visible.append(message_id)
                ids.append(message_id)
            return ids

    def get(self) -> list[MemoryMessage]:
        now = time.monotonic()
        with self._lock:
            self._return_due(now)
            taken = []
            deadline = now + self.visibility_timeout
            visible = self._visible
            for _ in range(min(self.max_messages, len(visible))):
                message_id = visible.popleft()
                receipt = next(self._receipts)
                count = self._receive_counts[message_id] + 1
                self._receive_counts[message_id] = count
                self._leases[message_id] = (receipt, deadline)
                taken.append(MemoryMessage(message_id, self._bodies[message_id], receipt, count))
            return taken

    def cleanup(self, messages: Iterable[MemoryMessage]) -> None:
        with self._lock:
            for message in self._live(messages):
                del self._leases[message.id], self._bodies[message.id]
                del self._receive_counts[message.id]
                self.deleted += 1

    def reject(self, messages: Iterable[MemoryMessage], delay: float | None = None) -> None:
        """Make failed messages visible again after ``delay`` (default ``reject_delay``)."""
        delay = self.reject_delay if delay is None else delay
        visible_at = time.monotonic() + delay
        with self._lock:
            for message in self._live(messages):
                del self._leases[message.id]
                if delay > 0:
                    heapq.heappush(self._delayed, (visible_at, message.id))
                else:
                    self._visible.append(message.id)

    def release(self, messages: Iterable[MemoryMessage]) -> None:
        """Make never-handled messages visible at once; the delivery does not count."""
        with self._lock:
            for message in self._live(messages):
                del self._leases[message.id]
                self._receive_counts[message.id] -= 1
                self._visible.appendleft(message.id)  # back to its place at the head

    def extend(self, messages: Iterable[MemoryMessage], timeout: float | None = None) -> int:
        """Lease held messages for ``timeout`` more seconds from now (default
        ``visibility_timeout``); returns how many were still held. (An extension shorter than
        the visibility timeout may bring a message back late, never early.)"""
        seconds = self.visibility_timeout if timeout is None else timeout
        seconds = checks.seconds("timeout", seconds, positive=True)
        deadline = time.monotonic() + seconds
        with self._lock:
            live = self._live(messages)
            for message in live:
                self._leases[message.id] = (message.receipt, deadline)
                self._leases.move_to_end(message.id)  # deadline order, as _return_due expects
            return len(live)

    def __len__(self) -> int:
        """Messages not yet deleted: visible, delayed or leased."""
        with self._lock:
            return len(self._bodies)

    def stats(self) -> dict[str, int]:
        """Counts by state, with the keys every queue has (``depth``, ``in_flight``,
        ``dead_letters``)."""
        with self._lock:
            self._return_due(time.monotonic())
            return {
                "depth": len(self._visible),
                "visible": len(self._visible),
                "delayed": len(self._delayed),
                "in_flight": len(self._leases),
                "dead_letters": 0,  # a memory queue has none: failures come back
                "deleted": self.deleted,
            }

    def _live(self, messages: Iterable[MemoryMessage]) -> list[MemoryMessage]:
        """The messages whose delivery is still the live one (lease held)."""
        leases = self._leases
        return [m for m in messages if leases.get(m.id, (None,))[0] == m.receipt]

    def _return_due(self, now: float) -> None:
        """Expired leases and due delayed messages become visible (lock held)."""
        leases = self._leases
        while leases:
            message_id, (_, deadline) = next(iter(leases.items()))
            if deadline > now:
                break
            del leases[message_id]
            self._visible.append(message_id)
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._visible.append(heapq.heappop(delayed)[1])


_URL_OPTIONS: OptionTable = {
    "visibility_timeout": ("visibility_timeout", checks.seconds),
    "max_messages": ("max_messages", checks.count),
    "reject_delay": ("reject_delay", checks.seconds),
}
_by_name: dict[str, MemoryQueue] = {}
_by_name_lock = threading.Lock()


def from_url(url: str) -> MemoryQueue:
    """``memory://NAME?visibility_timeout=S&max_messages=N&reject_delay=S``: an in-process
    ``MemoryQueue``, one per name and process (demos and tests)."""
    options = parse_query(url, _URL_OPTIONS)
    name = url.partition("://")[2].partition("?")[0]
    with _by_name_lock:
        if name not in _by_name:
            _by_name[name] = MemoryQueue(**options)
        return _by_name[name]


if TYPE_CHECKING:  # mypy proves the capabilities MemoryQueue claims

    def _capabilities(queue: MemoryQueue) -> None:
        _get: Queue[MemoryMessage] = queue
        _cleanup: SupportsCleanup[MemoryMessage] = queue
        _reject: SupportsReject[MemoryMessage] = queue
        _release: SupportsRelease[MemoryMessage] = queue
        _extend: SupportsExtend[MemoryMessage] = queue
        _stats: SupportsStats = queue
