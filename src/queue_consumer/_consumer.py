"""Consumer: the public object. Validates its settings, owns the lifecycle, supervises.

max_workers worker threads               max_handlers handler slots (threads, or
(each: free slot -> get -> plan jobs)     threads each driving one child process)
                |  submit / park job  ->  handler(iter(chunk)) -> Outcome
                                          -> settle in batches: cleanup / reject / release
supervise(): revive dead workers, find stuck handlers, shut down on SIGTERM / SIGINT
shutdown():  stop fetching -> drain handlers (until timeout) -> release the rest -> flush
"""

from __future__ import annotations

import enum
import functools
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from . import _checks as checks
from ._config import Config
from ._hooks import ConsumerHooks, Hooks
from ._pool import HandlerPool, join_threads
from ._protocols import Queue
from ._runners import ProcessRunner, ThreadRunner
from ._settle import Settler
from ._statistics import Counters, Statistics
from ._worker import Conveyor, Worker, plan_jobs
from .errors import ConfigurationError, ConsumerStateError, StuckHandlersError

if TYPE_CHECKING:
    from .observability.health import Health

log = logging.getLogger("queue_consumer.consumer")

_CPUS = multiprocessing.cpu_count()
_RELEASE_GRACE = 5.0  # seconds shutdown waits for workers to hand back fetched messages


class State(enum.Enum):
    NEW = "new"  #: built, not started
    RUNNING = "running"  #: fetching and handling
    STOPPING = "stopping"  #: shutdown began: no more fetching, handlers draining
    STOPPED = "stopped"  #: everything settled or released; cannot start again


class Consumer:
    """Consume ``queue`` with worker threads, handing chunks of messages to handlers.

    >>> from queue_consumer import Consumer, MemoryQueue
    >>> from queue_consumer.testing import wait_until
    >>> queue = MemoryQueue()
    >>> _ = queue.put_many(range(3))
    >>> def handler(messages):
    ...     for message in messages:
    ...         pass  # process(message)
    >>> with Consumer(queue, handler, max_workers=1, max_handlers=2) as consumer:
    ...     wait_until(lambda: len(queue) == 0, timeout=10)
    >>> consumer.statistics().succeeded
    3
    """

    def __init__(
        self,
        queue: Queue[Any],
        handler: Callable[..., object] | None = None,
        max_workers: int = _CPUS,
        max_handlers: int = _CPUS,
        messages_bulk_size: int = 1,
        worker_polling_time: float = 0,
        pool_initializer: Callable[[], object] | None = None,
        with_thread_executor: bool = True,
        *,
        handler_timeout: float | None = None,
        max_stuck_handlers: int = 0,
        shutdown_timeout: float | None = None,
        settle_delay: float = 0.05,
        hooks: Iterable[ConsumerHooks] = (),
        mp_context: str | multiprocessing.context.BaseContext | None = None,
    ) -> None:
        self.queue = queue
        self._config = config = Config.build(
            queue,
            handler=handler,
            max_workers=max_workers,
            max_handlers=max_handlers,
            messages_bulk_size=messages_bulk_size,
            worker_polling_time=worker_polling_time,
            pool_initializer=pool_initializer,
            with_thread_executor=with_thread_executor,
            handler_timeout=handler_timeout,
            max_stuck_handlers=max_stuck_handlers,
            shutdown_timeout=shutdown_timeout,
            settle_delay=settle_delay,
            hooks=hooks,
            mp_context=mp_context,
        )
        self._counters = Counters()
        self._state = State.NEW
        self._lock = threading.Lock()
        self._stop = threading.Event()  # workers: stop fetching
        self._hurry = threading.Event()  # shutdown: stop waiting for handlers
        self._stopped = threading.Event()
        self._wake = threading.Event()  # blocking supervise: a signal arrived
        self._signals = 0
        self._fatal: BaseException | None = None
        self._supervising = threading.Lock()
        self._pool: HandlerPool | None = None
        self._hooks = hooks_ = Hooks(config.hooks)
        self._settler = Settler(
            queue, self._counters, hooks_, delay=config.settle_delay, idle=self._idle
        )
        self._conveyor = Conveyor(self._settler, self._counters, hooks_)
        group = getattr(queue, "message_group", None)
        self._plan = functools.partial(plan_jobs, bulk=config.messages_bulk_size, group=group)
        self._workers: list[tuple[threading.Thread, Worker]] = []

    @property
    def state(self) -> State:
        return self._state

    def start(self) -> None:
        """Start the handler slots and the workers."""
        with self._lock:
            if self._state is not State.NEW:
                raise ConsumerStateError(
                    "Cannot start a consumer once it has been started or shut down; "
                    "create a new Consumer."
                )
            _refuse_in_handler_process()
            self._state = State.RUNNING
        config = self._config
        context = config.mp_context

        def make_runner() -> ThreadRunner | ProcessRunner:
            if context is None:
                return ThreadRunner(config.handler, config.pool_initializer)
            return ProcessRunner(config.handler, config.pool_initializer, context)

        self._pool = HandlerPool(config.max_handlers, make_runner)
        self._workers = [self._start_worker(i) for i in range(config.max_workers)]
        log.info(
            "consumer started: %d worker(s), %d handler slot(s) in %s",
            config.max_workers,
            config.max_handlers,
            "threads" if context is None else f"processes ({context.get_start_method()})",
        )

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop fetching, let running handlers finish, then release what is left.

        ``timeout`` (default: ``shutdown_timeout``, else wait for ever) bounds the wait
        for running handlers; past it, their messages are released (handler processes are
        killed; handler threads are left to finish on their own, their outcome ignored).
        Safe to call twice, and from any thread. A consumer cannot be started again.
        """
        with self._lock:
            state = self._state
            if state in (State.NEW, State.STOPPED):
                self._state = State.STOPPED
                self._stopped.set()
                return
            if state is State.RUNNING:
                self._state = State.STOPPING
        if state is State.STOPPING:  # another thread is shutting down: wait for it
            self._stopped.wait()
            return
        timeout = self._config.shutdown_timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        log.info("consumer shutting down")
        pool = self._pool
        assert pool is not None
        self._stop.set()
        pool.close()
        interrupt = getattr(self.queue, "interrupt", None)
        if callable(interrupt):  # a get() waiting for messages returns at once
            try:
                interrupt()
            except Exception:
                log.exception("queue.interrupt() failed")
        join_threads([thread for thread, _ in self._workers], deadline, self._hurry)
        if not pool.join(deadline, self._hurry):
            self._abandon_running(pool)
        # Past a deadline (or a second signal) a worker may still be handing back a batch it
        # fetched: that takes moments, so wait for it, unless it is still inside get().
        settle_by = time.monotonic() + _RELEASE_GRACE
        while self._counters.snapshot().in_flight > self._settler.pending():
            if time.monotonic() > settle_by:
                break
            time.sleep(0.01)
        self._settler.close()
        with self._lock:
            self._state = State.STOPPED
        self._stopped.set()
        self._wake.set()
        log.info("consumer stopped")

    def stop_now(self) -> None:
        """Make a shutdown in progress stop waiting for running handlers (second signal)."""
        self._hurry.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the consumer has stopped; re-raise what stopped it, if anything did."""
        stopped = self._stopped.wait(timeout)
        if self._fatal is not None:
            raise self._fatal
        return stopped

    def statistics(self) -> Statistics:
        """A consistent snapshot of the counters and the current state; cheap, any thread."""
        pool, now = self._pool, time.monotonic()
        in_get = [w.in_get_since for _, w in self._workers if w.in_get_since is not None]
        return self._counters.snapshot(
            settles_pending=self._settler.pending(),
            workers_alive=sum(thread.is_alive() for thread, _ in self._workers),
            workers_total=self._config.max_workers,
            handlers_busy=0 if pool is None else pool.running(),
            handlers_total=self._config.max_handlers,
            jobs_parked=0 if pool is None else pool.parked(),
            in_get_for=max((now - since for since in in_get), default=0.0),
        )

    def health(self) -> Health:
        """Live, ready, stalled, and why: see ``queue_consumer.observability.health``."""
        from .observability.health import check

        return check(self, self._config.hooks)

    def supervise(self, blocking: bool = False, polling_time: float = 1) -> None:
        """Revive dead workers and watch for stuck handlers, every ``polling_time`` seconds.

        ``blocking=True`` runs in the calling thread until the consumer stops; in the main
        thread it also shuts down gracefully on SIGTERM / SIGINT (a second signal stops
        without waiting for running handlers), then returns. More stuck handlers than
        ``max_stuck_handlers`` shut the consumer down and raise ``StuckHandlersError``
        (from here when blocking, from ``join()`` otherwise).
        """
        polling_time = checks.seconds("polling_time", polling_time, positive=True)
        if self._state is State.NEW:
            raise ConsumerStateError("Cannot supervise a consumer that was not started.")
        if not blocking:
            threading.Thread(
                target=self._supervise_in_background,
                args=(polling_time,),
                name="queue_consumer-supervisor",
                daemon=True,
            ).start()
            return
        in_main = threading.current_thread() is threading.main_thread()
        previous = self._install_signal_handlers() if in_main else {}
        try:
            while not self._stopped.is_set():
                if self._signals:
                    self.shutdown()
                    break
                self._check()
                self._wake.wait(polling_time)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self) -> Consumer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<Consumer {self._state.value} queue={self.queue!r}>"

    # -- internals -------------------------------------------------------------------

    def _idle(self) -> bool:
        """No other chunk runs or waits: nothing more will join a settle batch soon."""
        pool = self._pool
        return pool is None or (pool.busy() <= 1 and not pool.parked())

    def _start_worker(self, index: int) -> tuple[threading.Thread, Worker]:
        assert self._pool is not None
        worker = Worker(
            self.queue.get,
            self._plan,
            self._conveyor,
            self._pool,
            self._stop,
            self._config.worker_polling_time,
        )
        thread = threading.Thread(
            target=self._run_worker, args=(worker,), name=f"queue_consumer-worker-{index}"
        )
        thread.daemon = True  # a worker blocked in a long get() must not hold the exit
        thread.start()
        return thread, worker

    def _run_worker(self, worker: Worker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # ends this worker only; supervise() revives it
            self._conveyor.error("worker", exc)
            log.exception("worker %s died", threading.current_thread().name)

    def _check(self) -> None:
        """One supervision round: revive dead workers, handle stuck handlers."""
        with self._supervising:  # one round at a time, however many supervise() calls
            if self._state is State.RUNNING:
                self._revive_workers()
                if self._config.handler_timeout is not None:
                    self._check_stuck(self._config.handler_timeout)
            self._counters.supervised_at = time.time()
            if self._hooks.wants("on_supervise"):
                self._hooks.emit("on_supervise", self.statistics())

    def _revive_workers(self) -> None:
        for index, (thread, _) in enumerate(self._workers):
            if not thread.is_alive() and not self._stop.is_set():
                log.error("worker %s was dead; starting it again", thread.name)
                self._workers[index] = self._start_worker(index)
                self._counters.add(workers_revived=1)
                self._hooks.emit("on_worker_revived", thread.name)

    def _check_stuck(self, handler_timeout: float) -> None:
        assert self._pool is not None
        for stuck in self._pool.find_stuck(handler_timeout):
            self._counters.add(handlers_stuck=1)
            self._hooks.emit("on_handler_stuck", stuck.chunk, stuck.running_for)
            if stuck.killed:
                log.error("handler stuck for %.1fs; its process was killed", stuck.running_for)
            else:
                log.error("handler thread stuck for %.1fs", stuck.running_for)
        count = self._pool.stuck_now(handler_timeout)
        if count > self._config.max_stuck_handlers:
            error = StuckHandlersError(
                f"{count} handler(s) ran longer than handler_timeout={handler_timeout}s "
                f"(max_stuck_handlers={self._config.max_stuck_handlers})"
            )
            self._counters.error(str(error))
            self._fatal = error
            # Handlers that are not stuck get to finish and settle (bounded: past
            # handler_timeout they would be stuck too). Releasing their messages at once
            # would hand them to another consumer while they are still being handled.
            grace = self._config.shutdown_timeout
            self.shutdown(timeout=handler_timeout if grace is None else min(grace, handler_timeout))
            raise error

    def _supervise_in_background(self, polling_time: float) -> None:
        while not self._stopped.wait(polling_time):
            try:
                self._check()
            except StuckHandlersError:
                log.critical("stuck handlers: the consumer was shut down", exc_info=True)
                return

    def _install_signal_handlers(self) -> dict[int, Any]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals == 1:
                log.info("%s: shutting down gracefully", signal.Signals(signum).name)
            else:
                log.warning("%s again: stopping now", signal.Signals(signum).name)
                self.stop_now()
            self._wake.set()

        return {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def _abandon_running(self, pool: HandlerPool) -> None:
        """Past the shutdown deadline: settle what handlers still hold.

        A chunk whose handler ran past ``handler_timeout`` failed (an attempt spent, so a
        message that hangs its handler every time reaches the dead letters); the others
        are released.
        """
        timeout = self._config.handler_timeout
        for chunk, running_for in pool.abandon_running():
            if timeout is not None and running_for >= timeout:
                error = f"handler timed out: still running after {running_for:.1f}s"
                log.warning("%s; %d message(s) failed", error, len(chunk))
                self._settler.add("reject", chunk, f"{error} (handler_timeout={timeout}s)", True)
            else:
                log.warning("shutdown deadline: releasing %d message(s) of a handler", len(chunk))
                self._settler.add("release", chunk, now=True)


def _refuse_in_handler_process() -> None:
    """A script without ``if __name__ == "__main__":`` runs again in every handler process
    (spawn and forkserver import the main module there): fail there once, clearly."""
    if _importing_main():
        raise ConfigurationError(
            "a Consumer was started while a handler process imported your main module: "
            'put the code that starts the consumer under `if __name__ == "__main__":` '
            "(process mode imports the main module in every handler process)"
        )


def _importing_main() -> bool:
    main = __import__("sys").modules.get("__main__")
    return getattr(main, "__name__", "") == "__mp_main__"
