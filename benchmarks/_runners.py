"""The runners compared: hand-written references and the consumer, over any benchmark queue.

A benchmark queue has ``get()``, ``cleanup(messages)``, a ``done`` event and a
``finished_at`` stamp (``time.perf_counter()`` of the n-th cleanup). Every runner returns
the seconds from its start to that stamp, and leaves no thread of its own running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from queue_consumer import Consumer

Handler = Callable[[Iterator[Any]], object]
#: called once ``done`` is set, while the runner still runs (SQS: wait for an empty queue)
Drain = Callable[[], None]

TIMEOUT = 600.0  # a run that has not finished by then has lost messages
STALL = 3.0  # seconds a consumer may sit idle short of the n-th cleanup before it failed


class RunFailed(Exception):
    pass


def _wait_done(queue: Any, idle: Callable[[], bool] | None = None) -> None:
    """Wait for the n-th cleanup; fail fast once ``idle`` holds for a while without it."""
    deadline = time.monotonic() + TIMEOUT
    idle_since = None
    while not queue.done.wait(0.25):
        now = time.monotonic()
        if idle is not None and idle():
            idle_since = idle_since or now
            if now - idle_since > STALL:
                raise RunFailed(
                    "stalled: the queue is exhausted, nothing is in flight, "
                    "and not every message was cleaned up"
                )
        else:
            idle_since = None
        if now > deadline:
            raise RunFailed(f"not all messages were cleaned up within {TIMEOUT:.0f}s")


def bare_loop(queue: Any, handler: Handler, threads: int = 1, drain: Drain | None = None) -> float:
    """``threads`` plain loops of get -> handle -> cleanup: the floor any consumer sits on."""
    stop = threading.Event()

    def loop() -> None:
        get, cleanup, done = queue.get, queue.cleanup, stop.is_set
        while not done():
            messages = get()
            if messages:
                handler(iter(messages))
                cleanup(messages)
            elif queue.done.is_set():
                return  # in-memory queue exhausted; SQS keeps polling until ``stop``
            else:
                stop.wait(0.001)

    started = time.perf_counter()
    if threads == 1 and drain is None:
        loop()
    else:
        pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for thread in pool:
            thread.start()
        try:
            _wait_done(queue)
            if drain is not None:
                drain()
        finally:
            stop.set()
            for thread in pool:
                thread.join()
    _wait_done(queue)
    return queue.finished_at - started  # type: ignore[no-any-return]


def naive_executor(queue: Any, handler: Handler, max_workers: int) -> float:
    """One ``ThreadPoolExecutor.submit`` per message, handle + cleanup in the task."""

    def one(message: Any) -> None:
        handler(iter((message,)))
        queue.cleanup([message])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers) as executor:
        submit = executor.submit
        while messages := queue.get():
            for message in messages:
                submit(one, message)
    _wait_done(queue)
    return queue.finished_at - started  # type: ignore[no-any-return]


def consumer(
    queue: Any, handler: Handler, drain: Drain | None = None, **options: Any
) -> tuple[float, dict[str, int]]:
    """The consumer under test; also returns its statistics (checked by the caller)."""
    instance = Consumer(queue, handler, **options)
    started = time.perf_counter()
    instance.start()

    def idle() -> bool:  # every message fetched and settled, yet not all cleaned up
        return bool(queue.exhausted) and instance.statistics().in_flight == 0

    try:
        _wait_done(queue, idle)
        if drain is not None:
            drain()
    finally:
        instance.shutdown()
    stats = instance.statistics()
    counts = {
        "received": stats.received,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "released": stats.released,
        "in_flight": stats.in_flight,
        "errors": stats.errors,
    }
    return queue.finished_at - started, counts


def check_statistics(stats: dict[str, int], n: int, duplicates_allowed: bool = False) -> list[str]:
    """What the consumer's own counters say went wrong, if anything."""
    problems = []
    if stats["failed"] or stats["errors"]:
        problems.append(f"{stats['failed']} failed, {stats['errors']} errors")
    if stats["in_flight"]:
        problems.append(f"{stats['in_flight']} still in flight after shutdown")
    short = stats["succeeded"] < n if duplicates_allowed else stats["succeeded"] != n
    if short:
        problems.append(f"succeeded {stats['succeeded']} of {n}")
    return problems
