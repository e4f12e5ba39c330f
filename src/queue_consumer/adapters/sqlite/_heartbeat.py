"""The SQLite queue's opt-in heartbeat: extend the leases it handed out until they are settled."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

# The queue's logger: the warning is about the queue, wherever the code lives.
log = logging.getLogger("queue_consumer.adapters.sqlite")

Key = tuple[int, str]  # (message id, lease token): one delivery


class Heartbeat:
    """Keep the leases of messages a queue object handed out alive until they are settled.

    A daemon thread wakes every quarter of the visibility timeout and extends the leases
    held for more than half of it, so a fast handler costs nothing and a slow one is not
    delivered twice. A process that dies takes the thread with it: its leases expire.
    No lock is needed against settling: an extension only matches a live lease token, so
    one that lands after a cleanup, reject or release changes nothing.

    ``extend(keys, seconds)`` extends leases and returns the keys whose lease was gone.
    """

    def __init__(
        self,
        extend: Callable[[list[Key], float], list[Key]],
        visibility_timeout: float,
        join_timeout: float,
    ) -> None:
        self._extend = extend
        self._timeout = visibility_timeout
        self._join_timeout = join_timeout
        self._held: dict[Key, float] = {}  # key -> monotonic time of last lease
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.extensions = 0

    def track(self, keys: Iterable[Key]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and leases are not ours
                self._held, self._thread, self._pid = {}, None, os.getpid()
            self._held.update(dict.fromkeys(keys, now))
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="queue_consumer-sqlite-heartbeat", daemon=True
                )
                self._thread.start()

    def untrack(self, keys: Iterable[Key]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._join_timeout)

    def _run(self) -> None:
        timeout = self._timeout
        while not self._stop.wait(max(timeout / 4, 0.01)):
            cutoff = time.monotonic() - timeout / 2
            with self._lock:
                due = [key for key, leased_at in self._held.items() if leased_at <= cutoff]
            if not due:
                continue
            try:
                lost = self._extend(due, timeout)
            except Exception as exc:  # a locked file, say: try again on the next beat
                log.warning("SQLite heartbeat could not extend %d lease(s): %s", len(due), exc)
                continue
            now = time.monotonic()
            with self._lock:
                for key in due:
                    if key in self._held:
                        self._held[key] = now
                for key in lost:  # someone else has it now (or it is gone): stop extending
                    self._held.pop(key, None)
                self.extensions += len(due) - len(lost)
