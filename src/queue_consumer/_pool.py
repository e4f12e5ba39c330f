"""Handler slots and their capacity: who may fetch, who runs what, what is stuck, what is left.

The pool owns ``max_handlers`` slots. A worker ``acquire``s a free slot *before* it calls
``get()``, so fetched messages never wait for a handler longer than one takes to finish.
Jobs of a batch that find no free slot are ``park``-ed; the next slot to finish runs one
at once (``release`` hands it over) rather than waking the worker. ``supervise`` asks the
pool for stuck handlers, shutdown for what is still running; nothing outside reaches into
a slot. A slot runs a chunk in one call: ``HandlerSlot.run(chunk) -> Outcome | None``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

from ._hooks import ChildContext
from ._runners import ProcessRunner, ThreadRunner
from ._tracking import Outcome, failed_whole, format_exception

log = logging.getLogger("queue_consumer.pool")

Job = list[list[Any]]  # chunks handled one after another in one slot (one chunk, or a group)
Task = Callable[["HandlerSlot"], None]


@dataclass(frozen=True, slots=True)
class Stuck:
    """A handler found running past ``handler_timeout`` (reported once per chunk)."""

    chunk: list[Any]
    running_for: float
    killed: bool  #: its process was killed (the chunk fails); a thread cannot be


class HandlerSlot:
    """One slot thread, its runner, and the chunk it runs now."""

    def __init__(
        self,
        runner: ThreadRunner | ProcessRunner,
        index: int,
        loop: Callable[[HandlerSlot], None],
    ) -> None:
        self.runner = runner
        self.lock = threading.Lock()
        self.chunk: list[Any] | None = None
        self._started_at = 0.0
        self._stuck = False  # already reported for this chunk
        self._abandoned = False  # shutdown gave up on this chunk and settles it itself
        self.thread = threading.Thread(
            target=loop, args=(self,), name=f"queue_consumer-handler-{index}", daemon=True
        )

    def run(self, chunk: list[Any], contexts: Sequence[ChildContext] = ()) -> Outcome | None:
        """Run the handler on ``chunk``; None if shutdown abandoned (and settled) it meanwhile."""
        with self.lock:
            self.chunk, self._started_at, self._stuck = chunk, time.monotonic(), False
        try:
            outcome = self.runner.run(chunk, contexts)
        except Exception as exc:  # the runner itself failed (a handler process would not start)
            outcome = failed_whole(len(chunk), format_exception(exc))
        with self.lock:
            self.chunk = None
            abandoned, self._abandoned = self._abandoned, False
        return None if abandoned else outcome

    def check_stuck(self, timeout: float, now: float) -> Stuck | None:
        with self.lock:
            # From the later of chunk start and handler process ready (not its start-up).
            running_for = now - max(self._started_at, self.runner.ready_at)
            if self.chunk is None or running_for < timeout or self._stuck:
                return None
            self._stuck = True
            # Under the lock: the chunk cannot finish and the next one start in between.
            killed = self.runner.kill(f"killed after {running_for:.1f}s (handler_timeout)")
            return Stuck(self.chunk, running_for, killed)

    def abandon(self) -> tuple[list[Any], float] | None:
        """Take the running chunk away (shutdown deadline), with how long it ran; kill its
        process if it has one."""
        with self.lock:
            chunk, self.chunk = self.chunk, None
            self._abandoned = chunk is not None
            running_for = time.monotonic() - max(self._started_at, self.runner.ready_at)
        if chunk is None:
            return None
        self.runner.kill("abandoned at the shutdown deadline")
        return chunk, running_for


class HandlerPool:
    """``size`` slot threads fed from one task queue, and the capacity that bounds it."""

    def __init__(self, size: int, make_runner: Callable[[], ThreadRunner | ProcessRunner]) -> None:
        self.size = size
        self._tasks: SimpleQueue[Task | None] = SimpleQueue()
        self._slots = [HandlerSlot(make_runner(), i, self._loop) for i in range(size)]
        self._free = size
        self._closed = False
        self._parked: deque[Task] = deque()  # never non-empty while a slot is free
        # One plain lock guards the capacity: taken with `with self._lock` on the hot path
        # (a Condition's own __enter__ is Python code), and the conditions wait on it.
        self._lock = lock = threading.Lock()
        self._freed = threading.Condition(lock)  # a slot was freed (or closed)
        self._taken = threading.Condition(lock)  # the parked jobs were taken (or closed)
        for slot in self._slots:
            slot.thread.start()

    # -- capacity --------------------------------------------------------------------

    def acquire(self) -> bool:
        """Wait for a free slot and take it; False once the pool is closing."""
        with self._lock:
            while not self._free and not self._closed:
                self._freed.wait()
            if self._closed:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        """Give back a slot taken with ``acquire`` but not used (``get()`` returned nothing)."""
        task = self._next()
        if task is not None:  # a parked job takes it: an idle slot thread runs it
            self._tasks.put(task)

    def submit(self, task: Task) -> None:
        """Run ``task`` in a slot; the caller holds one for it."""
        self._tasks.put(task)

    def submit_or_park(self, tasks: list[Task]) -> None:
        """Run each task in a free slot now, or park it for the next slot to finish."""
        with self._lock:
            ready = 0 if self._closed else min(self._free, len(tasks))
            self._free -= ready
            self._parked.extend(tasks[ready:])
        for task in tasks[:ready]:
            self._tasks.put(task)

    def wait_taken(self, tasks: list[Task]) -> list[Task]:
        """Wait until none of ``tasks`` is parked; once closing, take back and return the rest."""
        with self._lock:
            while self._parked and not self._closed:
                self._taken.wait()
            mine = {id(task) for task in tasks}
            left = [task for task in self._parked if id(task) in mine]
            if left:
                self._parked = deque(task for task in self._parked if id(task) not in mine)
            return left

    def _next(self) -> Task | None:
        """A slot is done: hand it the next parked job, or free it."""
        with self._lock:
            if self._parked and not self._closed:
                task = self._parked.popleft()
                if not self._parked:
                    self._taken.notify_all()
                return task
            self._free += 1
            self._freed.notify()
            return None

    def busy(self) -> int:
        """Slots running (or about to run) a job."""
        return self.size - self._free

    def parked(self) -> int:
        """Jobs fetched that wait for a slot."""
        return len(self._parked)

    def running(self) -> int:
        """Slots running a handler now."""
        return sum(slot.chunk is not None for slot in self._slots)

    # -- supervision and shutdown -------------------------------------------------------

    def find_stuck(self, timeout: float) -> list[Stuck]:
        """Handlers newly found running past ``timeout``; their processes are killed."""
        now = time.monotonic()
        found = (slot.check_stuck(timeout, now) for slot in self._slots)
        return [stuck for stuck in found if stuck is not None]

    def stuck_now(self, timeout: float) -> int:
        """How many handler threads run past ``timeout`` now (stuck processes are killed)."""
        now = time.monotonic()
        count = 0
        for slot in self._slots:
            with slot.lock:
                if isinstance(slot.runner, ThreadRunner) and slot.chunk is not None:
                    count += now - slot._started_at >= timeout
        return count

    def close(self) -> None:
        """Stop handing out slots; let the slots finish what they run, then exit."""
        with self._lock:
            self._closed = True
            self._freed.notify_all()
            self._taken.notify_all()
        for _ in self._slots:
            self._tasks.put(None)

    def join(self, deadline: float | None, hurry: threading.Event) -> bool:
        """Wait for the slot threads until ``deadline`` or ``hurry``; True if all ended."""
        return join_threads([slot.thread for slot in self._slots], deadline, hurry)

    def abandon_running(self) -> list[tuple[list[Any], float]]:
        """Past the shutdown deadline: take what handlers still run (processes are killed).

        Waits a moment for the killed processes' slots; threads cannot be killed and are
        left to finish on their own, their outcome ignored.
        """
        chunks, killed = [], []
        for slot in self._slots:
            abandoned = slot.abandon()
            if abandoned is not None:
                chunks.append(abandoned)
                if isinstance(slot.runner, ProcessRunner):
                    killed.append(slot.thread)
        join_threads(killed, time.monotonic() + 5, threading.Event())
        return chunks

    def _loop(self, slot: HandlerSlot) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                break
            while task is not None:  # then the jobs parked meanwhile, in this same slot
                try:
                    task(slot)
                except BaseException:  # a bug in the task itself: log, keep the slot alive
                    log.exception("handler slot task failed")
                task = self._next()
        slot.runner.close(timeout=5)


def join_threads(
    threads: list[threading.Thread], deadline: float | None, hurry: threading.Event
) -> bool:
    """Join ``threads`` until ``deadline`` or ``hurry`` is set; True if all ended."""
    for thread in threads:
        while thread.is_alive() and not hurry.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            thread.join(0.05 if left is None else min(left, 0.05))
    return not any(thread.is_alive() for thread in threads)
