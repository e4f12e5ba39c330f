"""Settle handled messages in batches: one ``cleanup`` call for many one-message chunks.

With ``messages_bulk_size=1`` every chunk would otherwise cost its own ``cleanup`` (on SQS
one request per message). Settles of the same kind (and, for ``reject``, the same error)
wait in a batch until one of these sends it:
- the batch is full: as many messages as one ``get()`` returned (or the queue's
  ``max_settle_batch``), so a ``cleanup`` never gets more than the queue handed out;
- no other chunk is running and none is parked: nothing more is coming soon;
- ``delay`` seconds passed since the oldest one came (a timer thread), so a message waits
  for its settle briefly and never past its lease;
- a FIFO group's chunk (its next message waits for it), a release at shutdown, ``close()``.

Nothing is cleaned up before its handler succeeded; if the process dies with settles
pending, those messages come back when their lease ends (at-least-once). A settle call is
made once: retrying is the queue's job (it knows what is transient); a failure is logged
and counted, and the queue delivers the messages again.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ._hooks import Hooks
from ._statistics import Counters
from ._tracking import format_exception

log = logging.getLogger("queue_consumer.worker")

Key = tuple[str, "str | None"]  # (stage, error): what one settle call can carry


class Settler:
    """Batches of settles, sent by whoever fills one, by an idle pool, or by a timer."""

    def __init__(
        self,
        queue: Any,
        counters: Counters,
        hooks: Hooks,
        *,
        delay: float,
        idle: Callable[[], bool],
    ) -> None:
        reject = getattr(queue, "reject", None)
        dead_letter = getattr(queue, "dead_letter", None)
        self._methods: dict[str, Callable[..., object] | None] = {
            "cleanup": getattr(queue, "cleanup", None),
            "reject": reject,
            "release": getattr(queue, "release", None) or reject,
            "dead_letter": dead_letter or reject,
        }
        # Which calls take the handler's traceback (reject(..., error=...), for dead letters).
        self._with_error = {
            stage: accepts_keyword(method, "error") for stage, method in self._methods.items()
        }
        self._counters = counters
        self._hooks = hooks
        self._delay = delay
        self._idle = idle
        declared = getattr(queue, "max_settle_batch", None)
        self._fixed_limit = isinstance(declared, int) and declared > 0
        self.limit: int = declared if isinstance(declared, int) and declared > 0 else 1
        self._pending: dict[Key, list[Any]] = {}
        self._count = 0
        self._due: float | None = None
        self._lock = threading.Lock()  # guards the batches; a plain lock: add() is hot
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None

    def saw_batch(self, size: int) -> None:
        """A ``get()`` returned ``size`` messages: a settle batch may be as large."""
        if size > self.limit and not self._fixed_limit:
            self.limit = size

    def pending(self) -> int:
        return self._count

    def add(
        self, stage: str, messages: list[Any], error: str | None = None, now: bool = False
    ) -> None:
        """Settle ``messages`` by ``stage`` (cleanup, reject, release, dead_letter), soon."""
        if not messages:
            return
        key: Key = (stage, error if self._with_error[stage] else None)
        if now or self._delay <= 0:
            self._send(key, messages)
            return
        with self._lock:
            batch = self._pending.setdefault(key, [])
            batch.extend(messages)
            self._count += len(messages)
            full = len(batch) >= self.limit
            if full:
                del self._pending[key]
                self._count -= len(batch)
            elif self._due is None:
                self._due = time.monotonic() + self._delay
                if self._timer is None:
                    self._start_timer()
        if full:
            self._send(key, batch)
        elif self._idle():
            self.flush()

    def flush(self) -> None:
        """Send every pending batch now."""
        with self._lock:
            batches, self._pending, self._count, self._due = self._pending, {}, 0, None
        for key, batch in batches.items():
            self._send(key, batch)

    def close(self) -> None:
        """Flush what is pending and stop the timer (shutdown: before 'stopped')."""
        self._stopped.set()
        timer = self._timer
        if timer is not None:
            timer.join(5)
        self.flush()

    def _start_timer(self) -> None:
        """Started on first use (lock held): a consumer that settles at once needs none."""
        if not self._stopped.is_set():
            self._timer = threading.Thread(
                target=self._run_timer, name="queue_consumer-settler", daemon=True
            )
            self._timer.start()

    def _run_timer(self) -> None:
        """Look every ``delay`` for a batch that is due: no wake-up per batch on the hot path,
        and a message waits for its settle call two ``delay``s at most."""
        while not self._stopped.wait(self._delay):
            due = self._due
            if due is not None and due <= time.monotonic():
                self.flush()

    def _send(self, key: Key, messages: list[Any]) -> None:
        stage, error = key
        method = self._methods[stage]
        started = time.monotonic()
        failure: BaseException | None = None
        if method is not None:
            try:
                if error is not None:
                    method(messages, error=error)
                else:
                    method(messages)
            except Exception as exc:
                failure = exc
                self._counters.error(f"{stage}: {format_exception(exc)}")
                self._hooks.emit("on_error", stage, exc)
                log.error(
                    "%s of %d message(s) failed; the queue will deliver them again",
                    stage,
                    len(messages),
                    exc_info=True,
                )
        self._counters.settled(stage, len(messages))
        hooks = self._hooks
        if hooks.wants("on_settled"):
            hooks.emit("on_settled", stage, messages, time.monotonic() - started, failure)
        if stage == "release":
            hooks.emit("on_released", messages)


def accepts_keyword(method: Callable[..., object] | None, name: str) -> bool:
    if method is None:
        return False
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False
    return name in parameters and parameters[name].kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
