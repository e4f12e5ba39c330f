"""Fakes for core unit tests: a MemoryQueue that records how every message was settled."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from queue_consumer import MemoryMessage, MemoryQueue


class RecordingQueue(MemoryQueue):
    """Counts cleanup / reject / release per message body (picklable bodies only)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("visibility_timeout", 30.0)
        super().__init__(**kwargs)
        self.record_lock = threading.Lock()
        self.cleaned: Counter[Any] = Counter()
        self.rejected: Counter[Any] = Counter()
        self.released: Counter[Any] = Counter()
        self.calls: list[tuple[str, list[Any]]] = []

    def _record(self, kind: str, messages: Iterable[MemoryMessage]) -> list[MemoryMessage]:
        messages = list(messages)
        with self.record_lock:
            getattr(self, kind).update(m.body for m in messages)
            self.calls.append((kind, [m.body for m in messages]))
        return messages

    def cleanup(self, messages: Iterable[MemoryMessage]) -> None:
        super().cleanup(self._record("cleaned", messages))

    def reject(self, messages: Iterable[MemoryMessage], delay: float | None = None) -> None:
        super().reject(self._record("rejected", messages), delay)

    def release(self, messages: Iterable[MemoryMessage]) -> None:
        super().reject(self._record("released", messages), 0)


class GetOnlyQueue:
    """The smallest queue: get() only, over a list, each message handed out once."""

    def __init__(self, items: Iterable[Any], batch: int = 10) -> None:
        self._items = list(items)
        self._batch = batch
        self._lock = threading.Lock()

    def get(self) -> list[Any]:
        with self._lock:
            taken, self._items = self._items[: self._batch], self._items[self._batch :]
            return taken


class GroupedQueue(RecordingQueue):
    """Bodies are (group, n) tuples; message_group returns the group."""

    def message_group(self, message: MemoryMessage) -> Hashable | None:
        return message.body[0]  # type: ignore[no-any-return]

    def release(self, messages: Iterable[MemoryMessage]) -> None:
        # Like a FIFO service: the group stays blocked until its failed message is back.
        MemoryQueue.reject(self, self._record("released", messages))
