"""Handler slots: a fixed set of threads that run jobs, each handler in-thread or in its own child.

A *handler slot* is one daemon thread of the parent. In thread mode it calls the handler
itself; in process mode it owns one child process, sends it a chunk and waits for the
``Outcome``. Either way the slot thread gets the outcome back in the parent, so cleanup
and reject run here, next to the queue's clients, and the pool knows nothing of messages.

One child per slot (rather than ``ProcessPoolExecutor``) means that a child killed by the
OS, or by ``supervise`` for running too long, fails exactly its own chunk; the slot starts
a new child for the next one.

    worker --submit(job)--> SimpleQueue --> slot thread --runner.run(chunk)--> Outcome
                                                 |  process mode: Pipe <-> child
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from ._tracking import Outcome, format_exception, run_handler
from .errors import HandlerProcessError

log = logging.getLogger("queue_consumer.pool")

Task = Callable[["HandlerSlot"], None]

_START_BACKOFF = (0.5, 10.0)  # seconds before restarting a child that failed to start; doubles


class ThreadRunner:
    """Runs the handler in the slot's own thread."""

    ready_at = 0.0  # see ProcessRunner.ready_at: a thread is always ready

    def __init__(self, handler: Callable[..., object]) -> None:
        self._handler = handler

    def run(self, chunk: list[Any]) -> Outcome:
        return run_handler(self._handler, chunk)

    def kill(self, reason: str = "") -> bool:
        return False  # a thread cannot be killed

    def close(self, timeout: float | None = None) -> None:
        pass


class ProcessRunner:
    """Runs the handler in one child process of its own, started on first use."""

    def __init__(
        self,
        handler: Callable[..., object],
        initializer: Callable[[], object] | None,
        context: multiprocessing.context.BaseContext,
    ) -> None:
        self._handler = handler
        self._initializer = initializer
        self._context = context
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._kill_reason: str | None = None
        self._failed_starts = 0  # children in a row whose start failed
        #: When the child became ready (monotonic; inf while it starts). Handler time
        #: counts from here: a slow start (pool_initializer) is not a stuck handler.
        self.ready_at = 0.0

    def run(self, chunk: list[Any]) -> Outcome:
        try:
            payload = pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the parent keeps the messages: they fail, nothing hangs
            return self._run_without_unpicklable(chunk, exc)
        error = ""
        for _ in range(2):  # a child that died idle never saw the chunk: a new one gets it
            conn = self._connection()
            try:
                conn.send_bytes(payload)
                break
            except OSError as exc:  # killed (or out of memory) between two chunks
                error = self._died(exc)
        else:
            return Outcome(0, None, error)
        try:
            result = conn.recv()
        except (EOFError, OSError) as exc:
            return Outcome(0, None, self._died(exc))
        assert isinstance(result, Outcome)
        return result

    def _run_without_unpicklable(self, chunk: list[Any], exc: Exception) -> Outcome:
        """Fail only the messages that do not pickle; the handler gets the others.

        Otherwise one bad message would fail its innocent neighbours on every delivery,
        until a dead-letter policy took them all.
        """
        error = f"messages could not be pickled for the handler process: {exc!r}"
        bad = []
        for index, message in enumerate(chunk):
            try:
                pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
            except Exception:
                bad.append(index)
        good = [i for i in range(len(chunk)) if i not in bad]
        if not bad or not good:  # only the chunk as a whole fails (or all of it): fail it all
            return Outcome(0, None, error)
        outcome = self.run([chunk[i] for i in good])
        _, failed_good = outcome.split(good)
        failed = tuple(sorted(bad + failed_good))
        if outcome.error is not None:
            error = f"{error}\n{outcome.error}"
        return Outcome(0, failed, error)

    def _connection(self) -> multiprocessing.connection.Connection:
        """The pipe to the child, starting a child if there is none."""
        if self._process is not None and self._conn is not None:
            return self._conn
        self.ready_at = math.inf
        if self._failed_starts:
            # The last child could not start (its pool_initializer failed): wait before the
            # next, holding the slot, so a broken initializer does not spin up a child for
            # every message; back-pressure meanwhile keeps the workers from fetching.
            first, longest = _START_BACKOFF
            time.sleep(min(first * 2 ** (self._failed_starts - 1), longest))
        try:
            conn = self._start()
        except HandlerProcessError:
            self._failed_starts += 1
            raise
        self._failed_starts = 0
        self.ready_at = time.monotonic()
        return conn

    def kill(self, reason: str = "killed") -> bool:
        """SIGKILL the child; the chunk it runs fails and the next one gets a new child."""
        process = self._process
        if process is None or process.pid is None:
            return False
        self._kill_reason = reason
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def close(self, timeout: float | None = None) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError):
            conn.send_bytes(b"")  # the child's signal to exit
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()

    def _start(self) -> multiprocessing.connection.Connection:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(child_end, self._handler, self._initializer),
            name="queue_consumer-handler",
            daemon=True,
        )
        process.start()
        child_end.close()
        self._process, self._conn, self._kill_reason = process, parent_end, None
        try:
            ready = parent_end.recv()
        except (EOFError, OSError) as exc:
            raise HandlerProcessError(self._died(exc)) from None
        if ready is not None:  # the initializer failed: its traceback, as text
            self.close()
            raise HandlerProcessError(f"pool_initializer failed in the handler process:\n{ready}")
        return parent_end

    def _died(self, exc: BaseException) -> str:
        process = self._process
        reason = self._kill_reason
        self.close(timeout=5)
        code = process.exitcode if process is not None else None
        if reason:
            return f"handler process {reason} (exit code {code})"
        return f"handler process died (exit code {code}): {exc!r}"


def child_main(
    conn: multiprocessing.connection.Connection,
    handler: Callable[..., object],
    initializer: Callable[[], object] | None,
) -> None:
    """A handler process: run chunks until told to stop. Module-level so that it pickles."""
    # Ctrl-C, and SIGTERM from systemd or `kill -- -PGID`, reach the whole process group;
    # the parent decides when handlers stop (it tells them, or SIGKILLs them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if initializer is not None:
        try:
            initializer()
        except Exception as exc:
            conn.send(format_exception(exc))
            return
    conn.send(None)
    while True:
        try:
            payload = conn.recv_bytes()
        except EOFError:
            return
        if not payload:
            return
        try:
            chunk = pickle.loads(payload)
        except Exception as exc:
            conn.send(
                Outcome(0, None, f"messages could not be unpickled in the handler process: {exc!r}")
            )
            continue
        conn.send(run_handler(handler, chunk))


class HandlerSlot:
    """One slot thread, its runner, and what it is running now (for ``supervise``)."""

    def __init__(self, pool: HandlerPool, runner: ThreadRunner | ProcessRunner, index: int) -> None:
        self.runner = runner
        self.lock = threading.Lock()
        self.chunk: list[Any] | None = None
        self.started_at = 0.0
        self.stuck = False  #: already reported stuck for this chunk
        self.abandoned = False  #: shutdown gave up on this chunk and settled it itself
        self._pool = pool
        self.thread = threading.Thread(
            target=self._loop, name=f"queue_consumer-handler-{index}", daemon=True
        )

    def begin(self, chunk: list[Any]) -> None:
        with self.lock:
            self.chunk, self.started_at, self.stuck = chunk, time.monotonic(), False

    def end(self) -> bool:
        """Mark the chunk done; False if shutdown already abandoned (and settled) it."""
        with self.lock:
            self.chunk = None
            abandoned, self.abandoned = self.abandoned, False
            return not abandoned

    def abandon(self) -> list[Any] | None:
        """Take the running chunk away from this slot (shutdown deadline): the caller settles it."""
        with self.lock:
            chunk, self.chunk = self.chunk, None
            self.abandoned = chunk is not None
            return chunk

    def _loop(self) -> None:
        pool = self._pool
        if pool.initializer is not None and isinstance(self.runner, ThreadRunner):
            try:
                pool.initializer()
            except Exception:
                log.exception("pool_initializer failed in %s", threading.current_thread().name)
        tasks = pool.tasks
        while True:
            task = tasks.get()
            if task is None:
                break
            try:
                task(self)
            except BaseException:  # a bug in the task itself: log, keep the slot alive
                log.exception("handler slot task failed")
        self.runner.close(timeout=5)


class HandlerPool:
    """``size`` handler slots fed from one queue of tasks.

    The pool does not bound submissions: the consumer's slot counter does, so that a task
    submitted always finds a free slot thread.
    """

    def __init__(
        self,
        size: int,
        make_runner: Callable[[], ThreadRunner | ProcessRunner],
        initializer: Callable[[], object] | None,
    ) -> None:
        self.initializer = initializer
        self.tasks: SimpleQueue[Task | None] = SimpleQueue()
        self.slots = [HandlerSlot(self, make_runner(), i) for i in range(size)]
        for slot in self.slots:
            slot.thread.start()

    def submit(self, task: Task) -> None:
        self.tasks.put(task)

    def close(self) -> None:
        """Let the slots finish what they run, then exit."""
        for _ in self.slots:
            self.tasks.put(None)
