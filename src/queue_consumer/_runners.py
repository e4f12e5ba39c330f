"""How a handler slot runs a chunk: in its own thread, or in one child process of its own.

One child per slot (rather than ``ProcessPoolExecutor``) means that a child killed by the
OS, or by ``supervise`` for running too long, fails exactly its own chunk; the slot starts
a new child for the next one. Messages travel to the child once; only the ``Outcome``
(counts and traceback text) comes back, so settling stays in the parent.

    slot thread --pickle(chunk, contexts)--> Pipe --> child_main --> run_handler --> Outcome
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
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._hooks import ChildContext
from ._tracking import Outcome, failed_whole, format_exception, run_handler
from .errors import HandlerProcessError

log = logging.getLogger("queue_consumer.pool")

_START_BACKOFF = (0.5, 10.0)  # seconds before retrying an initializer that failed; doubles


class Backoff:
    """Waits before each retry of a start-up that failed: 0.5 s, doubling up to 10 s."""

    def __init__(self) -> None:
        self.failures = 0

    def wait(self) -> None:
        if self.failures:
            first, longest = _START_BACKOFF
            time.sleep(min(first * 2 ** (self.failures - 1), longest))


class ThreadRunner:
    """Runs the handler in the slot's own thread, after ``pool_initializer`` succeeded there.

    A failing initializer fails the chunk with its traceback and is tried again before the
    next chunk, after a backoff: as in process mode, no handler runs uninitialised.
    """

    ready_at = 0.0  # see ProcessRunner.ready_at: a thread is always ready

    def __init__(self, handler: Callable[..., object], initializer: Callable[[], object] | None):
        self._handler = handler
        self._initializer = initializer
        self._backoff = Backoff()

    def run(self, chunk: list[Any], contexts: Sequence[ChildContext] = ()) -> Outcome:
        if self._initializer is not None:
            self._backoff.wait()
            try:
                self._initializer()
            except Exception as exc:
                self._backoff.failures += 1
                text = f"pool_initializer failed in the handler thread:\n{format_exception(exc)}"
                return failed_whole(len(chunk), text)
            self._initializer = None
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
        self._backoff = Backoff()  # children in a row whose start failed
        #: When the child became ready (monotonic; inf while it starts). Handler time
        #: counts from here: a slow start (pool_initializer) is not a stuck handler.
        self.ready_at = 0.0

    def run(self, chunk: list[Any], contexts: Sequence[ChildContext] = ()) -> Outcome:
        try:
            payload = pickle.dumps((chunk, tuple(contexts)), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # the parent keeps the messages: they fail, nothing hangs
            return self._run_without_unpicklable(chunk, contexts, exc)
        error = ""
        for _ in range(2):  # a child that died idle never saw the chunk: a new one gets it
            conn = self._connection()
            try:
                conn.send_bytes(payload)
                break
            except OSError as exc:  # killed (or out of memory) between two chunks
                error = self._died(exc)
        else:
            return failed_whole(len(chunk), error)
        try:
            result = conn.recv()
        except (EOFError, OSError) as exc:
            return failed_whole(len(chunk), self._died(exc))
        if isinstance(result, str):  # the child could not unpickle the chunk
            return failed_whole(len(chunk), result)
        assert isinstance(result, Outcome)
        return result

    def _run_without_unpicklable(
        self, chunk: list[Any], contexts: Sequence[ChildContext], exc: Exception
    ) -> Outcome:
        """Fail only the messages that do not pickle; the handler gets the others.

        Otherwise one bad message would fail its innocent neighbours on every delivery,
        until a dead-letter policy took them all.
        """
        error = f"messages could not be pickled for the handler process: {exc!r}"
        try:
            pickle.dumps(tuple(contexts))
        except Exception:  # a hook's child context: run without it rather than fail the chunk
            log.warning("a hook's handler context does not pickle; the handler runs without it")
            contexts = ()
        bad = []
        for index, message in enumerate(chunk):
            try:
                pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
            except Exception:
                bad.append(index)
        good = [i for i in range(len(chunk)) if i not in bad]
        if not bad or not good:  # only the chunk as a whole fails (or all of it): fail it all
            return failed_whole(len(chunk), error)
        outcome = self.run([chunk[i] for i in good], contexts)
        _, failed_good, untried_good = outcome.split(good)
        failed = tuple(sorted(bad + failed_good + untried_good))
        if outcome.error is not None:
            error = f"{error}\n{outcome.error}"
        return Outcome(0, 0, error, failed)

    def _connection(self) -> multiprocessing.connection.Connection:
        """The pipe to the child, starting a child if there is none."""
        if self._process is not None and self._conn is not None:
            return self._conn
        self.ready_at = math.inf
        # After a child that could not start (its pool_initializer failed), wait before the
        # next, holding the slot, so a broken initializer does not spin up a child for every
        # message; back-pressure meanwhile keeps the workers from fetching.
        self._backoff.wait()
        try:
            conn = self._start()
        except _KilledWhileStarting:
            raise
        except HandlerProcessError:
            self._backoff.failures += 1
            raise
        self._backoff.failures = 0
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
            error = self._died(exc)
            if process.exitcode == -signal.SIGKILL:  # killed from outside: not its own fault
                raise _KilledWhileStarting(error) from None
            raise HandlerProcessError(error) from None
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


class _KilledWhileStarting(HandlerProcessError):
    """The child was SIGKILLed while it started (OOM killer, an operator): no backoff."""


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
            chunk, contexts = pickle.loads(payload)
        except Exception as exc:
            error = f"messages could not be unpickled in the handler process: {exc!r}"
            conn.send(error)  # the chunk's size is not known here: the parent fails it whole
            continue
        with contextlib.ExitStack() as stack:
            for context in contexts:
                try:
                    stack.enter_context(context())
                except Exception:
                    log.exception("a hook's handler context failed in the handler process")
            conn.send(run_handler(handler, chunk))
