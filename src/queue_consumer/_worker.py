"""The data path: a worker polls the queue, chunks what it gets, and slots handle and settle it.

    worker thread:  take a handler slot -> get() -> chunk into jobs -> submit each job
    slot thread:    for each chunk of the job: handler -> Outcome -> cleanup(succeeded)
                                                                  -> reject(failed)
                    give the handler slot back

A worker takes a free handler slot *before* it calls ``get()``, and one more for each
further job of the batch, so no fetched message waits for a handler longer than it takes
one to finish (an unbounded executor queue would hold messages past their visibility
timeout and they would be delivered twice). Every fetched message ends in exactly one of
cleanup, reject or release.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from ._hooks import HookDispatcher
from ._pool import HandlerPool, HandlerSlot
from ._statistics import Counters
from ._tracking import Outcome, format_exception

log = logging.getLogger("queue_consumer.worker")

Chunk = list[Any]
Job = list[Chunk]  # chunks handled one after another in one slot (one chunk, or a group)

_IDLE_WAIT = 0.05  # after an empty get(), so a non-blocking queue is not polled in a busy loop
_GET_BACKOFF = (0.1, 30.0)  # first and longest wait after get() failed; doubles in between
_SETTLE_ATTEMPTS = 3  # cleanup / reject / release are retried this often before giving up


class SlotCounter:
    """Free handler slots. ``acquire`` blocks until one is free; False once closed."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._closed = False
        self._cond = threading.Condition(threading.Lock())

    def acquire(self) -> bool:
        with self._cond:
            while not self._free and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Conveyor:
    """Everything after ``get()``: chunking, running a job in a slot, settling its outcome."""

    def __init__(
        self,
        queue: Any,
        bulk_size: int,
        counters: Counters,
        hooks: HookDispatcher,
    ) -> None:
        self.bulk_size = bulk_size
        self.counters = counters
        self.hooks = hooks
        # HookDispatcher is truthy only with hooks; asking it costs a call, so ask once.
        self._hooked = bool(hooks)
        self._cleanup: Callable[[list[Any]], object] | None = getattr(queue, "cleanup", None)
        self._reject: Callable[[list[Any]], object] | None = getattr(queue, "reject", None)
        self._release = getattr(queue, "release", None) or self._reject
        self._group: Callable[[Any], Hashable | None] | None = getattr(queue, "message_group", None)

    def jobs(self, messages: list[Any]) -> list[Job]:
        """Split a batch into jobs; a message group's chunks stay together, in order."""
        bulk = self.bulk_size
        if self._group is None:
            return [[messages[i : i + bulk]] for i in range(0, len(messages), bulk)]
        groups: dict[Hashable, list[Any]] = {}
        loose = []
        for message in messages:
            key = self._group(message)
            if key is None:
                loose.append(message)
            else:
                groups.setdefault(key, []).append(message)
        jobs = [
            [group[i : i + bulk] for i in range(0, len(group), bulk)] for group in groups.values()
        ]
        jobs.extend([loose[i : i + bulk]] for i in range(0, len(loose), bulk))
        return jobs

    def run_job(self, job: Job, slot: HandlerSlot, slots: SlotCounter) -> None:
        """Handle a job's chunks in turn; after a failure the rest of the group is released."""
        try:
            for position, chunk in enumerate(job):
                outcome = self._handle(chunk, slot)
                if outcome is None or (
                    position + 1 < len(job) and not outcome.all_succeeded(len(chunk))
                ):
                    self.release([m for rest in job[position + 1 :] for m in rest])
                    break
        finally:
            slots.release()

    def _handle(self, chunk: Chunk, slot: HandlerSlot) -> Outcome | None:
        """Run the handler on ``chunk`` and settle it; None if shutdown settled it instead."""
        slot.begin(chunk)
        self.counters.started(len(chunk))
        hooks = self.hooks if self._hooked else None
        if hooks is not None:
            hooks.on_chunk_started(chunk)
            started = time.monotonic()
        try:
            outcome = slot.runner.run(chunk)
        except Exception as exc:  # the runner itself failed (a handler process would not start)
            outcome = Outcome(0, None, format_exception(exc))
        if not slot.end():
            return None
        succeeded, failed = (
            (chunk, []) if outcome.all_succeeded(len(chunk)) else outcome.split(chunk)
        )
        if succeeded and self._cleanup is not None:
            self._call("cleanup", self._cleanup, succeeded)
        if failed and self._reject is not None:
            self._call("reject", self._reject, failed)
        self.counters.settled(len(succeeded), len(failed))
        if outcome.error is not None:
            self.counters.error(outcome.error, count=False)
            log.warning(
                "handler failed; %d of %d message(s) failed:\n%s",
                len(failed),
                len(chunk),
                outcome.error,
            )
        if hooks is not None:
            hooks.on_chunk_finished(succeeded, failed, outcome.error, time.monotonic() - started)
        return outcome

    def release(self, messages: list[Any]) -> None:
        """Hand back messages that were fetched but never handled."""
        if not messages:
            return
        if self._release is not None:
            self._call("release", self._release, messages)
        self.counters.add(released=len(messages))
        if self.hooks:
            self.hooks.on_released(messages)

    def error(self, stage: str, exc: BaseException) -> None:
        self.counters.error(f"{stage}: {format_exception(exc)}")
        if self.hooks:
            self.hooks.on_error(stage, exc)

    def _call(self, stage: str, method: Callable[[list[Any]], object], messages: list[Any]) -> None:
        """Settle with a few retries; on failure the queue's own redelivery takes over."""
        for attempt in range(1, _SETTLE_ATTEMPTS + 1):
            try:
                method(messages)
                return
            except Exception as exc:
                self.error(stage, exc)
                last = attempt == _SETTLE_ATTEMPTS
                log.error(
                    "%s of %d message(s) failed (attempt %d of %d)%s",
                    stage,
                    len(messages),
                    attempt,
                    _SETTLE_ATTEMPTS,
                    "; the queue will deliver them again" if last else "; retrying",
                    exc_info=True,
                )
                if not last:
                    time.sleep(0.1 * 2**attempt)


class Worker:
    """One polling thread: take a slot, ``get()``, dispatch jobs, until stopped."""

    def __init__(
        self,
        get: Callable[[], Any],
        conveyor: Conveyor,
        pool: HandlerPool,
        slots: SlotCounter,
        stop: threading.Event,
        polling_time: float,
    ) -> None:
        self._get = get
        self._conveyor = conveyor
        self._pool = pool
        self._slots = slots
        self._stop = stop
        self._polling_time = polling_time

    def run(self) -> None:
        get, slots, stop, counters = self._get, self._slots, self._stop, self._conveyor.counters
        hooks = self._conveyor.hooks
        backoff = _GET_BACKOFF[0]
        while not stop.is_set():
            if not slots.acquire():
                return
            try:
                messages = list(get())
            except Exception as exc:
                slots.release()
                self._conveyor.error("get", exc)
                log.error("get() failed; retrying in %.1fs", backoff, exc_info=True)
                stop.wait(backoff)
                backoff = min(backoff * 2, _GET_BACKOFF[1])
                continue
            except BaseException:  # ends this worker (supervise revives it): free its slot
                slots.release()
                raise
            backoff = _GET_BACKOFF[0]
            counters.add(get_calls=1, received=len(messages))
            if not messages:
                slots.release()
                stop.wait(self._polling_time or _IDLE_WAIT)
                continue
            if hooks:
                hooks.on_received(messages)
            self._dispatch(messages)
            if self._polling_time:
                stop.wait(self._polling_time)

    def _dispatch(self, messages: list[Any]) -> None:
        """Submit each job with a slot of its own (the first uses the slot already held)."""
        try:
            jobs = self._conveyor.jobs(messages)
        except Exception as exc:  # message_group() failed: hand the batch back untouched
            self._slots.release()
            self._conveyor.error("message_group", exc)
            self._conveyor.release(messages)
            return
        submitted = 0
        for job in jobs:
            if submitted and not self._slots.acquire():
                break
            if self._stop.is_set():  # fetched after shutdown began: never started
                self._slots.release()
                break
            self._pool.submit(functools.partial(self._conveyor.run_job, job, slots=self._slots))
            submitted += 1
        self._conveyor.release([m for job in jobs[submitted:] for chunk in job for m in chunk])
