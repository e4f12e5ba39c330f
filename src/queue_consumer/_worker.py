"""The data path: a worker polls the queue, chunks what it gets, and slots handle and settle it.

    worker thread:  take a handler slot -> get() -> chunk into jobs -> submit each job
    slot thread:    for each chunk of the job: handler -> Outcome -> cleanup(succeeded)
                                                                  -> reject(failed)
                    give the handler slot back

A worker takes a free handler slot *before* it calls ``get()``, and one more for each
further job of the batch, so no fetched message waits for a handler longer than it takes
one to finish (an unbounded executor queue would hold messages past their visibility
timeout and they would be delivered twice). Jobs that find no free slot are parked, and
the next slot to finish takes one (no hand-over through the worker), while the worker
waits to fetch again until all are taken. Every fetched message ends in exactly one of
cleanup, reject or release.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections import deque
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
    """Free handler slots, and jobs fetched that wait for one.

    ``acquire`` blocks until a slot is free; False once closed. A worker that fetched more
    jobs than it has slots ``park``s the rest: a slot that finishes a job keeps going with
    the next parked one (``release`` returns it) rather than going idle and waking the
    worker to hand it over, so a batch costs one wake-up of the worker, not one per job.
    Parked jobs come before workers waiting to fetch more: they are fetched already.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._closed = False
        self._parked: deque[Job] = deque()  # never non-empty while a slot is free
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # a slot was freed (or closed)
        self._taken = threading.Condition(lock)  # the parked jobs were taken (or closed)

    def acquire(self) -> bool:
        with self._cond:
            while not self._free and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._free -= 1
            return True

    def release(self) -> Job | None:
        """Give a slot back; if a job is parked, keep the slot and return the job to run in it."""
        with self._cond:
            if self._parked and not self._closed:
                job = self._parked.popleft()
                if not self._parked:
                    self._taken.notify_all()
                return job
            self._free += 1
            self._cond.notify()
            return None

    def park(self, jobs: list[Job]) -> list[Job]:
        """Take free slots for some of ``jobs`` (returned: submit them) and park the rest."""
        with self._cond:
            ready = 0 if self._closed else min(self._free, len(jobs))
            self._free -= ready
            self._parked.extend(jobs[ready:])
            return jobs[:ready]

    def wait_taken(self, jobs: list[Job]) -> list[Job]:
        """Wait until no job is parked; once closed, take back and return those of ``jobs``."""
        with self._cond:
            while self._parked and not self._closed:
                self._taken.wait()
            mine = {id(job) for job in jobs}
            left = [job for job in self._parked if id(job) in mine]
            if left:
                self._parked = deque(job for job in self._parked if id(job) not in mine)
            return left

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._taken.notify_all()


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
        self._reject: Callable[..., object] | None = getattr(queue, "reject", None)
        self._release = getattr(queue, "release", None) or self._reject
        # A reject(messages, *, error=...) keeps the handler's traceback (e.g. for dead letters).
        self._reject_with_error = _accepts_keyword(self._reject, "error")
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
        """Run ``job``, then each job parked for a slot meanwhile, then free the slot."""
        error: BaseException | None = None
        next_job: Job | None = job
        while next_job is not None:
            try:
                self._run_job(next_job, slot)
            except BaseException as exc:  # a bug: it must not strand the parked jobs
                error = exc
            next_job = slots.release()
        if error is not None:
            raise error

    def _run_job(self, job: Job, slot: HandlerSlot) -> None:
        """Handle a job's chunks in turn; after a failure the rest of the group is released."""
        for position, chunk in enumerate(job):
            outcome = self._handle(chunk, slot)
            if outcome is None or (
                position + 1 < len(job) and not outcome.all_succeeded(len(chunk))
            ):
                self.release([m for rest in job[position + 1 :] for m in rest])
                break

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
            reject = self._reject
            if self._reject_with_error and outcome.error is not None:
                reject = functools.partial(reject, error=outcome.error)
            self._call("reject", reject, failed)
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
                self._give_back()
                self._conveyor.error("get", exc)
                log.error("get() failed; retrying in %.1fs", backoff, exc_info=True)
                stop.wait(backoff)
                backoff = min(backoff * 2, _GET_BACKOFF[1])
                continue
            except BaseException:  # ends this worker (supervise revives it): free its slot
                self._give_back()
                raise
            backoff = _GET_BACKOFF[0]
            counters.add(get_calls=1, received=len(messages))
            if not messages:
                self._give_back()
                stop.wait(self._polling_time or _IDLE_WAIT)
                continue
            if hooks:
                hooks.on_received(messages)
            self._dispatch(messages)
            if self._polling_time:
                stop.wait(self._polling_time)

    def _dispatch(self, messages: list[Any]) -> None:
        """Submit the first job in the slot already held, the rest as slots become free.

        Returns once every job has a slot, so that the worker fetches no more meanwhile.
        """
        try:
            jobs = self._conveyor.jobs(messages)
        except Exception as exc:  # message_group() failed: hand the batch back untouched
            self._give_back()
            self._conveyor.error("message_group", exc)
            self._conveyor.release(messages)
            return
        if self._stop.is_set():  # fetched after shutdown began: never started
            self._give_back()
            self._conveyor.release(messages)
            return
        self._submit(jobs[0])
        rest = jobs[1:]
        if not rest:
            return
        for job in self._slots.park(rest):
            self._submit(job)
        left = self._slots.wait_taken(rest)  # non-empty only after shutdown began
        self._conveyor.release([m for job in left for chunk in job for m in chunk])

    def _submit(self, job: Job) -> None:
        """Run ``job`` in a handler slot; the caller holds a slot for it."""
        self._pool.submit(functools.partial(self._conveyor.run_job, job, slots=self._slots))

    def _give_back(self) -> None:
        """Free the slot this worker holds, or hand it to a job another worker parked."""
        job = self._slots.release()
        if job is not None:
            self._submit(job)


def _accepts_keyword(method: Callable[..., object] | None, name: str) -> bool:
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
