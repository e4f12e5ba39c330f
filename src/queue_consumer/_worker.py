"""The data path, read down the page: a worker fetches, plans jobs, and a slot handles and settles.

    worker thread:  pool.acquire() -> get() -> plan_jobs() -> submit / park each job
    slot thread:    for each chunk of the job: handler -> Outcome -> settle: cleanup(succeeded)
                                                                          reject(failed)
                                                                          release(untried)

A worker holds a free handler slot *before* it calls ``get()`` (back-pressure), so fetched
messages wait for a handler no longer than one takes to finish. Every fetched message ends
in exactly one of cleanup, reject, dead_letter or release.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from ._hooks import Hooks
from ._pool import HandlerPool, HandlerSlot, Job
from ._settle import Settler
from ._statistics import Counters
from ._tracking import Outcome, format_exception

log = logging.getLogger("queue_consumer.worker")

_IDLE_WAIT = 0.05  # after an empty get(), so a non-blocking queue is not polled in a busy loop
_GET_BACKOFF = (0.1, 30.0)  # first and longest wait after get() failed; doubles in between
_LOG_EVERY = 60.0  # seconds: a handler failure with the same cause is logged once per this


def plan_jobs(
    messages: list[Any], bulk: int, group: Callable[[Any], Hashable | None] | None
) -> list[tuple[Job, bool]]:
    """Split a batch into ``(chunks, grouped)`` jobs; a message group's chunks stay together.

    >>> plan_jobs([1, 2, 3], 2, None)
    [([[1, 2]], False), ([[3]], False)]
    >>> plan_jobs(["a1", "b1", "a2"], 1, lambda m: m[0])
    [([['a1'], ['a2']], True), ([['b1']], True)]
    """
    if group is None:
        return [([messages[i : i + bulk]], False) for i in range(0, len(messages), bulk)]
    groups: dict[Hashable, list[Any]] = {}
    loose = []
    for message in messages:
        key = group(message)
        if key is None:
            loose.append(message)
        else:
            groups.setdefault(key, []).append(message)
    jobs = [([g[i : i + bulk] for i in range(0, len(g), bulk)], True) for g in groups.values()]
    jobs.extend(([loose[i : i + bulk]], False) for i in range(0, len(loose), bulk))
    return jobs


class Conveyor:
    """Runs a job's chunks in a slot and settles each outcome; the same for every worker."""

    def __init__(self, settler: Settler, counters: Counters, hooks: Hooks) -> None:
        self.settler = settler
        self.counters = counters
        self.hooks = hooks
        # Asked once: a hook that overrides none of these costs the hot path nothing.
        self._watched = any(
            hooks.wants(event)
            for event in ("on_chunk_started", "handler_context", "on_chunk_finished")
        )
        self._failures = FailureLog()

    def run_job(self, job: Job, grouped: bool, slot: HandlerSlot) -> None:
        """Handle the chunks in turn; after a failure the rest of a group is released."""
        for position, chunk in enumerate(job):
            outcome = self.handle(chunk, slot, grouped)
            if outcome is None or (grouped and (outcome.failed or outcome.failed_indices)):
                self.release([m for rest in job[position + 1 :] for m in rest], now=True)
                return

    def handle(self, chunk: list[Any], slot: HandlerSlot, grouped: bool) -> Outcome | None:
        """Run the handler on ``chunk`` and settle it; None if shutdown settled it instead."""
        self.counters.started(len(chunk))
        hooks = self.hooks
        if not self._watched:
            outcome = slot.run(chunk)
        else:
            hooks.emit("on_chunk_started", chunk)
            started = time.monotonic()
            if hooks.wants("handler_context"):
                with hooks.handler_contexts(chunk) as children:
                    outcome = slot.run(chunk, children)
            else:
                outcome = slot.run(chunk)
        if outcome is None:
            return None
        succeeded, failed, untried = outcome.split(chunk)
        if self._watched:
            duration = time.monotonic() - started
            hooks.emit("on_chunk_finished", succeeded, failed, outcome.error, duration)
        settle = self.settler.add
        settle("cleanup", succeeded, now=grouped)
        if outcome.error is not None:
            settle("dead_letter" if outcome.permanent else "reject", failed, outcome.error, grouped)
            settle("release", untried, now=grouped)
            self.counters.error(outcome.error, handler=True)
            self._failures.log(outcome.error, len(failed), len(untried), len(chunk))
        return outcome

    def release(self, messages: list[Any], now: bool = False) -> None:
        """Hand back messages that were fetched but never tried."""
        self.settler.add("release", messages, now=now)

    def error(self, stage: str, exc: BaseException) -> None:
        self.counters.error(f"{stage}: {format_exception(exc)}")
        self.hooks.emit("on_error", stage, exc)


class Worker:
    """One polling thread: take a slot, ``get()``, dispatch jobs, until stopped."""

    def __init__(
        self,
        get: Callable[[], Any],
        plan: Callable[[list[Any]], list[tuple[Job, bool]]],
        conveyor: Conveyor,
        pool: HandlerPool,
        stop: threading.Event,
        polling_time: float,
    ) -> None:
        self._get = get
        self._plan = plan
        self._conveyor = conveyor
        self._pool = pool
        self._stop = stop
        self._polling_time = polling_time
        self.in_get_since: float | None = None  #: monotonic time the current get() began

    def run(self) -> None:
        get, pool, stop, conveyor = self._get, self._pool, self._stop, self._conveyor
        counters, hooks = conveyor.counters, conveyor.hooks
        backoff = _GET_BACKOFF[0]
        while not stop.is_set():
            if not pool.acquire():
                return
            self.in_get_since = started = time.monotonic()
            try:
                messages = list(get())
            except Exception as exc:
                self.in_get_since = None
                pool.release()
                counters.got(0, ok=False)
                hooks.emit("on_get", 0, time.monotonic() - started, exc)
                conveyor.error("get", exc)
                log.error("get() failed; retrying in %.1fs", backoff, exc_info=True)
                stop.wait(backoff)
                backoff = min(backoff * 2, _GET_BACKOFF[1])
                continue
            except BaseException:  # ends this worker (supervise revives it): free its slot
                self.in_get_since = None
                pool.release()
                raise
            self.in_get_since = None
            backoff = _GET_BACKOFF[0]
            counters.got(len(messages), ok=True)
            if hooks.wants("on_get"):
                hooks.emit("on_get", len(messages), time.monotonic() - started, None)
            if not messages:
                pool.release()
                stop.wait(self._polling_time or _IDLE_WAIT)
                continue
            conveyor.settler.saw_batch(len(messages))
            hooks.emit("on_received", messages)
            self._dispatch(messages)
            if self._polling_time:
                stop.wait(self._polling_time)

    def _dispatch(self, messages: list[Any]) -> None:
        """Run the first job in the slot already held, the rest as slots become free.

        Returns once every job has a slot, so that the worker fetches no more meanwhile.
        """
        try:
            jobs = self._plan(messages)
        except Exception as exc:  # message_group() failed: hand the batch back untouched
            self._pool.release()
            self._conveyor.error("message_group", exc)
            self._conveyor.release(messages, now=True)
            return
        if self._stop.is_set():  # fetched after shutdown began: never started
            self._pool.release()
            self._conveyor.release(messages, now=True)
            return
        tasks = [self._task(job, grouped) for job, grouped in jobs]
        self._pool.submit(tasks[0])
        if len(tasks) == 1:
            return
        self._pool.submit_or_park(tasks[1:])
        left = self._pool.wait_taken(tasks[1:])  # non-empty only after shutdown began
        if left:
            untried = [m for task in left for chunk in task.job for m in chunk]  # type: ignore[attr-defined]
            self._conveyor.release(untried, now=True)

    def _task(self, job: Job, grouped: bool) -> Callable[[HandlerSlot], None]:
        run_job = self._conveyor.run_job

        def task(slot: HandlerSlot) -> None:
            run_job(job, grouped, slot)

        task.job = job  # type: ignore[attr-defined]
        return task


class FailureLog:
    """Logs a handler failure once per cause (exception and place) a minute, not per message.

    Every failure is still counted and logged at DEBUG; a failing handler on a hot retry
    loop writes one WARNING a minute, with how many more it had.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # cause -> (last logged, since then)

    def log(self, error: str, failed: int, untried: int, size: int) -> None:
        cause = _cause(error)
        now = time.monotonic()
        with self._lock:
            logged_at, more = self._seen.get(cause, (-_LOG_EVERY, 0))
            due = now - logged_at >= _LOG_EVERY
            self._seen[cause] = (now, 0) if due else (logged_at, more + 1)
        what = f"{failed} of {size} message(s) failed" + (
            f", {untried} never tried (released)" if untried else ""
        )
        if due:
            again = f" ({more} more like it in the last minute)" if more else ""
            log.warning("handler failed; %s%s:\n%s", what, again, error)
        else:
            log.debug("handler failed again; %s:\n%s", what, error)


def _cause(error: str) -> str:
    """The exception type and the innermost place it was raised: one key per bug, not per
    message (its text often names the message)."""
    lines = error.splitlines()
    place = next((line for line in reversed(lines) if line.lstrip().startswith("File ")), "")
    kind = lines[-1].partition(":")[0] if lines else ""
    return f"{kind} at {place.strip()}"
