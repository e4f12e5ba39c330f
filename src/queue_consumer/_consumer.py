"""Consumer: the public object. Validates its arguments, owns the lifecycle, supervises.

max_workers worker threads          max_handlers handler slots (threads, or threads
(each: slot -> get -> chunk)  --->  each driving one child process)
                                        handler(iter(chunk)) -> Outcome
                                        -> cleanup(succeeded) / reject(failed)
supervise(): revive dead workers, find stuck handlers, shut down on SIGTERM/SIGINT
shutdown():  stop fetching -> drain handlers (until timeout) -> release the rest
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

from ._config import validate
from ._hooks import ConsumerHooks, HookDispatcher
from ._pool import HandlerPool, ProcessRunner, ThreadRunner
from ._statistics import Counters, Statistics
from ._worker import Conveyor, SlotCounter, Worker
from .errors import ConfigurationError, ConsumerStateError, StuckHandlersError

log = logging.getLogger("queue_consumer.consumer")

_CPUS = multiprocessing.cpu_count()
_RELEASE_GRACE = 5.0  # seconds shutdown waits for workers to hand back fetched messages


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


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
        queue: Any,
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
        hooks: Iterable[ConsumerHooks] = (),
        mp_context: str | multiprocessing.context.BaseContext | None = None,
    ) -> None:
        self.queue = queue
        self._config = validate(
            queue,
            handler,
            max_workers,
            max_handlers,
            messages_bulk_size,
            worker_polling_time,
            pool_initializer,
            with_thread_executor,
            handler_timeout,
            max_stuck_handlers,
            shutdown_timeout,
            hooks,
            mp_context,
        )
        self._counters = Counters()
        self._hooks = HookDispatcher(self._config.hooks)
        self._conveyor = Conveyor(queue, messages_bulk_size, self._counters, self._hooks)
        self._state = State.NEW
        self._lock = threading.Lock()
        self._stop = threading.Event()  # workers: stop fetching
        self._hurry = threading.Event()  # shutdown: stop waiting for handlers
        self._stopped = threading.Event()
        self._wake = threading.Event()  # blocking supervise: a signal arrived
        self._signals = 0
        self._fatal: BaseException | None = None
        self._supervising = threading.Lock()
        self._slots = SlotCounter(max_handlers)
        self._pool: HandlerPool | None = None
        self._workers: list[threading.Thread] = []

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
            self._state = State.RUNNING
        config = self._config
        context = config.mp_context
        if context is None:
            handler = config.handler

            def make_runner() -> ThreadRunner | ProcessRunner:
                return ThreadRunner(handler)
        else:

            def make_runner() -> ThreadRunner | ProcessRunner:
                return ProcessRunner(config.handler, config.pool_initializer, context)

        self._pool = HandlerPool(config.max_handlers, make_runner, config.pool_initializer)
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
        self._stop.set()
        self._slots.close()
        self._wait_for(self._workers, deadline)
        pool = self._pool
        assert pool is not None
        pool.close()
        if not self._wait_for([slot.thread for slot in pool.slots], deadline):
            self._abandon_running(pool)
        # Past a deadline (or a second signal) a worker may still be handing back a batch it
        # fetched: that takes moments, so wait for it, unless it is still inside get().
        settle_by = time.monotonic() + _RELEASE_GRACE
        while self._counters.snapshot().in_flight and time.monotonic() < settle_by:
            time.sleep(0.01)
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
        """A consistent snapshot of the counters; cheap, safe from any thread."""
        return self._counters.snapshot()

    def supervise(self, blocking: bool = False, polling_time: float = 1) -> None:
        """Revive dead workers and watch for stuck handlers, every ``polling_time`` seconds.

        ``blocking=True`` runs in the calling thread until the consumer stops; in the main
        thread it also shuts down gracefully on SIGTERM / SIGINT (a second signal stops
        without waiting for running handlers), then returns. More stuck handlers than
        ``max_stuck_handlers`` shut the consumer down and raise ``StuckHandlersError``
        (from here when blocking, from ``join()`` otherwise).
        """
        if isinstance(polling_time, bool) or not (
            isinstance(polling_time, (int, float)) and polling_time > 0
        ):
            raise ConfigurationError(f"polling_time must be > 0 seconds, not {polling_time!r}")
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

    def _start_worker(self, index: int) -> threading.Thread:
        assert self._pool is not None
        worker = Worker(
            self.queue.get,
            self._conveyor,
            self._pool,
            self._slots,
            self._stop,
            self._config.worker_polling_time,
        )
        thread = threading.Thread(
            target=self._run_worker, args=(worker,), name=f"queue_consumer-worker-{index}"
        )
        thread.daemon = True  # a worker blocked in a long get() must not hold the exit
        thread.start()
        return thread

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
                self._check_once()

    def _check_once(self) -> None:
        for index, thread in enumerate(self._workers):
            if not thread.is_alive() and not self._stop.is_set():
                log.error("worker %s was dead; starting it again", thread.name)
                self._workers[index] = self._start_worker(index)
                self._counters.add(workers_revived=1)
                if self._hooks:
                    self._hooks.on_worker_revived(thread.name)
        if self._config.handler_timeout is not None:
            self._check_stuck(self._config.handler_timeout)

    def _check_stuck(self, handler_timeout: float) -> None:
        assert self._pool is not None
        now = time.monotonic()
        stuck = 0
        for slot in self._pool.slots:
            with slot.lock:
                # From the later of chunk start and handler process ready (not its start-up).
                since = max(slot.started_at, slot.runner.ready_at)
                chunk, running_for = slot.chunk, now - since
                if chunk is None or running_for < handler_timeout:
                    continue
                stuck += 1
                if slot.stuck:
                    continue
                slot.stuck = True
                # Under the lock: the chunk cannot finish and the next one start in between.
                killed = slot.runner.kill(f"killed after {running_for:.1f}s (handler_timeout)")
            self._counters.add(handlers_stuck=1)
            if self._hooks:
                self._hooks.on_handler_stuck(chunk, running_for)
            if killed:
                stuck -= 1
                log.error("handler stuck for %.1fs; its process was killed", running_for)
            else:
                log.error("handler stuck for %.1fs in %s", running_for, slot.thread.name)
        if stuck > self._config.max_stuck_handlers:
            error = StuckHandlersError(
                f"{stuck} handler(s) ran longer than handler_timeout={handler_timeout}s "
                f"(max_stuck_handlers={self._config.max_stuck_handlers})"
            )
            self._counters.error(str(error))
            self._fatal = error
            self.shutdown(timeout=0)
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

    def _wait_for(self, threads: list[threading.Thread], deadline: float | None) -> bool:
        """Join ``threads`` until ``deadline`` or ``stop_now()``; True if all ended."""
        for thread in threads:
            while thread.is_alive() and not self._hurry.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                thread.join(0.05 if left is None else min(left, 0.05))
        return not any(thread.is_alive() for thread in threads)

    def _abandon_running(self, pool: HandlerPool) -> None:
        """Past the shutdown deadline: release what handlers still hold, kill their processes."""
        killed = []
        for slot in pool.slots:
            chunk = slot.abandon()
            if chunk is None:
                continue
            log.warning("shutdown deadline: releasing %d message(s) of a handler", len(chunk))
            if slot.runner.kill("abandoned at the shutdown deadline"):
                killed.append(slot.thread)
            self._conveyor.release(chunk)
        self._wait_for(killed, time.monotonic() + 5)  # threads cannot be killed: not waited for
