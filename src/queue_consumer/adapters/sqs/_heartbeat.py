"""Keep held SQS messages invisible while their handlers run: a visibility heartbeat.

The adapter tracks every receipt handle ``get()`` returned until it is settled. A daemon
thread extends, in batches, the visibility of those held longer than ``fraction`` of the
visibility timeout, so a fast handler costs no extra request and a slow one is not
delivered twice. SQS allows at most 12 hours from a receive; a message held that long is
dropped from tracking (its handler is lost anyway) and left to SQS.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from ._message import MAX_VISIBILITY_TIMEOUT

__all__ = ["ExtendResult", "Heartbeat"]

log = logging.getLogger("queue_consumer.adapters.sqs")

#: Keep this far from the 12-hour limit: SQS counts from its own clock.
_LIMIT_MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class ExtendResult:
    """What became of an extension batch: handles extended, and handles SQS no longer knows."""

    extended: Collection[str]
    invalid: Collection[str]


#: extend([(receipt_handle, seconds), ...]) -> ExtendResult; may raise (logged, retried).
Extender = Callable[[list[tuple[str, int]]], ExtendResult]


@dataclass(slots=True)
class _Held:
    received_at: float
    extended_at: float


class Heartbeat:
    """Track held messages and extend their visibility from a background thread.

    With ``enabled=False`` it only tracks (for ``held`` and the 12-hour limit).

    ``track`` is called by ``get()``, ``untrack`` before a message is settled. ``untrack``
    waits for an extension in flight, so no extension can land after a delete, reject or
    release of the same message (it would hide a released message again).
    """

    def __init__(
        self,
        extend: Extender,
        visibility_timeout: int,
        fraction: float,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self._extend = extend
        self._timeout = visibility_timeout
        self._period = max(visibility_timeout * fraction, 0.05)
        self._clock = clock
        self._on_error = on_error
        self._enabled = enabled
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()  # guards _held
        self._beat_lock = threading.Lock()  # held during an extension request
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extensions = 0

    def track(self, receipt_handles: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            for handle in receipt_handles:
                self._held[handle] = _Held(now, now)
            if self._enabled and self._thread is None and not self._stop.is_set():
                # Started on first use: a queue that is built but never read costs no thread.
                self._thread = threading.Thread(
                    target=self._run, name="sqs-visibility-heartbeat", daemon=True
                )
                self._thread.start()

    def untrack(self, receipt_handles: Iterable[str]) -> dict[str, float]:
        """Stop extending these; return when each tracked one was received (clock time)."""
        handles = list(receipt_handles)
        received: dict[str, float] = {}
        with self._beat_lock, self._lock:
            for handle in handles:
                held = self._held.pop(handle, None)
                if held is not None:
                    received[handle] = held.received_at
        return received

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the thread (idempotent). Held messages are left as they are."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            try:
                self.beat()
            except Exception as exc:  # the heartbeat must outlive any one failure
                self._on_error(exc)
                log.warning("SQS visibility heartbeat failed (retrying): %r", exc)

    def _next_wait(self) -> float:
        # Wake when the oldest extension falls due; never busy-loop on a failing request.
        floor = min(max(self._period / 4, 0.05), 1.0)
        with self._lock:
            if not self._held:
                return self._period
            due = min(held.extended_at for held in self._held.values()) + self._period
        return max(due - self._clock(), floor)

    def beat(self) -> None:
        """Extend every held message that is due now (the thread calls this)."""
        with self._beat_lock:
            entries = self._due()
            if not entries:
                return
            result = self._extend(entries)
            now = self._clock()
            with self._lock:
                for handle in result.invalid:
                    self._held.pop(handle, None)
                for handle in result.extended:
                    held = self._held.get(handle)
                    if held is not None:
                        held.extended_at = now
                self.extensions += len(result.extended)

    def _due(self) -> list[tuple[str, int]]:
        now = self._clock()
        entries: list[tuple[str, int]] = []
        with self._lock:
            for handle, held in list(self._held.items()):
                if now - held.extended_at < self._period:
                    continue
                room = held.received_at + MAX_VISIBILITY_TIMEOUT - _LIMIT_MARGIN - now
                seconds = min(self._timeout, math.floor(room))
                if seconds <= 0:
                    log.warning("SQS message held for 12 hours (the SQS limit): no longer extended")
                    del self._held[handle]
                    continue
                entries.append((handle, seconds))
        return entries
