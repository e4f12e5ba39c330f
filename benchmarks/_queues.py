"""In-memory benchmark queues: messages are generated on demand and checked off on cleanup."""

from __future__ import annotations

import threading
import time


class CountingQueue:
    """``n`` integer messages, ``get()`` returns up to ``batch``; ``cleanup`` ticks them off.

    Messages are made lazily from a counter, so the queue never holds their bodies: its
    only per-message state is one byte of the checklist (how often each was cleaned up).
    ``done`` is set, and ``finished_at`` stamped, when ``n`` cleanups have happened.
    """

    def __init__(self, n: int, batch: int = 10) -> None:
        self.n = n
        self.batch = batch
        self.done = threading.Event()
        self.finished_at = 0.0
        self._next = 0
        self._count = 0
        self._cleaned = bytearray(n)
        self._lock = threading.Lock()

    def get(self) -> list[int]:
        with self._lock:
            start = self._next
            end = self._next = min(start + self.batch, self.n)
        return list(range(start, end))

    @property
    def exhausted(self) -> bool:
        """Every message was handed out by ``get()``."""
        return self._next >= self.n

    def cleanup(self, messages: list[int]) -> None:
        cleaned = self._cleaned
        with self._lock:
            for message in messages:
                if cleaned[message] < 255:
                    cleaned[message] += 1
            self._count += len(messages)
            if self._count >= self.n and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.done.set()

    def problems(self) -> list[str]:
        """Messages never cleaned up, or cleaned up more than once (none, in a good run)."""
        with self._lock:
            lost = self._cleaned.count(0)
            once = self._cleaned.count(1)
        duplicated = self.n - lost - once
        return [
            f"{count} of {self.n} messages {what}"
            for count, what in [(lost, "never cleaned up"), (duplicated, "cleaned up twice")]
            if count
        ]
