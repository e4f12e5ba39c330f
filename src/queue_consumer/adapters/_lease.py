"""Keep what a queue handed out leased until it is settled: the one lease heartbeat.

Every adapter whose broker has a lease (an SQS visibility timeout, a SQLite or PostgreSQL
lease column, a Redis pending entry's idle time, a NATS ack wait) tracks each delivery
from ``get()`` until ``cleanup`` / ``reject`` / ``release``. A daemon thread extends those
held longer than ``period`` since their last lease, so a fast handler costs nothing, a
slow one is not delivered twice, and messages fetched but still waiting for a free
handler slot stay leased too.

    keeper = LeaseKeeper(extend, period=visibility_timeout / 2, name="postgres")
    get():      keeper.track(keys)
    settle:     keeper.untrack(keys)        # waits for an extension in flight
    close():    keeper.close()

``extend({key: seconds_held, ...})`` extends the leases and returns the keys that are no
longer held (someone else leased them, or they are gone): those are dropped from
tracking. It may raise; the error is logged and the next beat tries again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["Extender", "LeaseKeeper"]

K = TypeVar("K", bound=Hashable)

#: extend({key: seconds since it was first tracked}) -> the keys no longer held.
Extender = Callable[[dict[K, float]], Collection[K]]

log = logging.getLogger("queue_consumer.adapters.lease")


class LeaseKeeper(Generic[K]):
    """Track held deliveries and extend their leases from one background thread.

    With ``enabled=False`` it only tracks (``held()``, and ``untrack`` returning when each
    was received), so an adapter has one code path whether the heartbeat is on or off.
    ``beat()`` is public so that tests can drive it with a fake ``clock`` and no thread.
    A forked child starts with nothing tracked: the parent's leases are not its own.
    """

    def __init__(
        self,
        extend: Extender[K],
        period: float,
        *,
        name: str,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        self._extend = extend
        self._period = max(float(period), 0.01)
        self._name = name
        self._enabled = enabled
        self._clock = clock
        self._on_error = on_error
        self._received: dict[K, float] = {}  # key -> when first tracked
        self._leased: dict[K, float] = {}  # key -> when last (re)leased
        self._lock = threading.Lock()  # guards the two dicts
        self._beat_lock = threading.Lock()  # held while an extension is in flight
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.extensions = 0  #: leases extended so far

    def track(self, keys: Iterable[K]) -> None:
        """Start keeping these leased (``get()`` just handed them out)."""
        now = self._clock()
        with self._lock:
            if self._pid != os.getpid():
                self._received, self._leased, self._thread = {}, {}, None
                self._pid = os.getpid()
            for key in keys:
                self._received[key] = now
                self._leased[key] = now
            if self._enabled and self._thread is None and not self._stop.is_set():
                # Started on first use: a queue built but never read costs no thread.
                self._thread = threading.Thread(
                    target=self._run, name=f"queue_consumer-{self._name}-leases", daemon=True
                )
                self._thread.start()

    def untrack(self, keys: Iterable[K]) -> dict[K, float]:
        """Stop extending these (about to be settled); return when each was first tracked.

        Waits for an extension in flight, so none can land after the settle (it would
        hide a released message again).
        """
        received: dict[K, float] = {}
        with self._beat_lock, self._lock:
            for key in keys:
                self._leased.pop(key, None)
                since = self._received.pop(key, None)
                if since is not None:
                    received[key] = since
        return received

    def held(self) -> int:
        """How many deliveries are tracked now."""
        with self._lock:
            return len(self._received)

    def beat(self) -> int:
        """Extend every lease that is due now; return how many were extended."""
        with self._beat_lock:
            now = self._clock()
            with self._lock:
                due = {
                    key: now - self._received[key]
                    for key, leased in self._leased.items()
                    if now - leased >= self._period
                }
            if not due:
                return 0
            lost = set(self._extend(due))
            now = self._clock()
            with self._lock:
                for key in due:
                    if key in lost:
                        self._leased.pop(key, None)
                        self._received.pop(key, None)
                    elif key in self._leased:
                        self._leased[key] = now
            extended = len(due) - len(lost & due.keys())
            self.extensions += extended
            return extended

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the thread (idempotent). What is held stays leased until its lease ends."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_wait())
            if self._stop.is_set():
                return
            try:
                self.beat()
            except Exception as exc:  # a locked file or a dropped connection: try again
                if self._on_error is not None:
                    self._on_error(exc)
                log.warning("%s: could not extend leases (retrying): %r", self._name, exc)
                self._stop.wait(min(self._period / 4, 1.0))

    def _next_wait(self) -> float:
        """Until the oldest lease falls due; never a busy loop."""
        with self._lock:
            if not self._leased:
                return self._period
            due = min(self._leased.values()) + self._period
        return max(due - self._clock(), min(self._period / 4, 0.05))
