"""Helpers for testing code that uses queue_consumer: deadline-bound waits, and a
conformance check that every queue adapter passes.

Never sleep and hope: wait for the condition, with a deadline that fails loudly.
"""

from __future__ import annotations

import pickle
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["check_queue_contract", "wait_until"]


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> None:
    """Return as soon as ``predicate()`` is true; raise ``TimeoutError`` after ``timeout``.

    ``message`` may be a callable, called at the deadline: it then describes the state
    the condition failed in, not the state it started in.

    >>> wait_until(lambda: True)
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f": {text}" if text else ""
            raise TimeoutError(f"condition not met within {timeout}s{detail}")
        time.sleep(interval)


def check_queue_contract(
    queue: Any,
    put: Callable[[list[str]], object],
    *,
    body: Callable[[Any], Any] = lambda message: message.body,
    timeout: float = 30.0,
    exactly_once: bool = True,
    fenced: bool = True,
    release_counts: bool = False,
) -> None:
    """Check that ``queue`` keeps the contract the consumer relies on; AssertionError if not.

    Give it a new, empty queue whose visibility timeout is short (a second or two) and whose
    ``reject`` makes messages visible again without a long backoff. ``put`` enqueues string
    bodies; ``body`` reads one back from a message. It checks, in order: nothing is handed
    out twice while leased; messages pickle (process mode); ``cleanup`` deletes for good;
    ``reject`` and ``release`` (where the queue has them) return messages; a message left
    alone comes back after its lease; and a ``Consumer`` with failing handlers drains it.
    ``exactly_once=False`` skips the final "nothing comes back" check of the concurrent
    drain, for test servers known to lose concurrent deletes (moto's SQS).

    Messages must carry ``delivery_count``: 1 on the first delivery, 2 on the next. With
    ``fenced`` (the default) a late ``cleanup`` of a delivery whose lease expired and whose
    message was delivered again must not delete it. ``release_counts=True`` says the
    broker counts a release as a delivery (SQS, JetStream); else a released message comes
    back with its count unchanged.
    """
    put([f"m{i}" for i in range(6)])
    leased = _receive(queue, body, 6, timeout)
    assert sorted(leased) == [f"m{i}" for i in range(6)], f"get() returned {sorted(leased)}"
    for message in leased.values():
        copy = pickle.loads(pickle.dumps(message))
        assert body(copy) == body(message), "a message must survive pickling unchanged"
    cleanup = getattr(queue, "cleanup", None)
    assert cleanup is not None, "a queue under test needs cleanup()"
    cleanup([leased["m0"], leased["m1"]])
    returned = {"m2", "m3", "m4", "m5"}
    if hasattr(queue, "reject"):
        queue.reject([leased["m2"]])
    if hasattr(queue, "release"):
        queue.release([leased["m3"]])
    for message in leased.values():
        count = getattr(message, "delivery_count", None)
        assert count == 1, f"a first delivery must have delivery_count 1, not {count!r}"
    # m4 and m5 are left alone: they come back when their lease expires. Each message is
    # cleaned up as soon as it is back, so seeing one twice means cleanup did not delete.
    again = _receive(queue, body, len(returned), timeout, settle=cleanup)
    assert set(again) == returned, f"expected {sorted(returned)} back, got {sorted(again)}"
    assert again["m2"].delivery_count == 2, "a rejected message's next delivery counts 2"
    assert again["m4"].delivery_count == 2, "an expired lease's next delivery counts 2"
    if hasattr(queue, "release"):
        expected = 2 if release_counts else 1
        assert again["m3"].delivery_count == expected, (
            f"a released message came back with delivery_count {again['m3'].delivery_count}"
        )
    _assert_empty(queue, timeout=2.0)
    if fenced:
        _check_fenced(queue, put, body, cleanup, timeout)
    _drain_with_consumer(queue, put, body, timeout, exactly_once)


def _check_fenced(
    queue: Any,
    put: Callable[[list[str]], object],
    body: Callable[[Any], Any],
    cleanup: Callable[[list[Any]], object],
    timeout: float,
) -> None:
    """A late holder (its lease expired, the message went out again) cannot delete it."""
    put(["late"])
    first = _receive(queue, body, 1, timeout)["late"]
    second = _receive(queue, body, 1, timeout)["late"]  # after the first lease expired
    cleanup([first])  # the late holder settles: must change nothing
    release = getattr(queue, "release", None)
    if release is not None:
        release([second])
    back = _receive(queue, body, 1, timeout)  # released at once, or after its lease
    assert set(back) == {"late"}, "a late cleanup deleted a message someone else held"
    cleanup(list(back.values()))
    _assert_empty(queue, timeout=1.0)


def _receive(
    queue: Any,
    body: Callable[[Any], Any],
    count: int,
    timeout: float,
    settle: Callable[[list[Any]], object] | None = None,
) -> dict[Any, Any]:
    """get() until ``count`` distinct messages came; fail on a duplicate."""
    leased: dict[Any, Any] = {}

    def more() -> bool:
        batch = list(queue.get())
        for message in batch:
            key = body(message)
            assert key not in leased, f"{key!r} was handed out twice while leased"
            leased[key] = message
        if settle is not None and batch:
            settle(batch)
        return len(leased) >= count

    wait_until(more, timeout, interval=0.05, message=f"{count} messages from get()")
    return leased


def _assert_empty(queue: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leftover = list(queue.get())
        assert not leftover, f"deleted or leased messages came back: {leftover!r}"
        time.sleep(0.1)


def _drain_with_consumer(
    queue: Any,
    put: Callable[[list[str]], object],
    body: Callable[[Any], Any],
    timeout: float,
    exactly_once: bool,
) -> None:
    from ._consumer import Consumer

    bodies = [f"c{i}" for i in range(40)]
    put(bodies)
    rng = random.Random(7)
    done: Counter[Any] = Counter()

    def handler(messages: Iterator[Any]) -> None:
        for message in messages:
            if rng.random() < 0.2:
                raise RuntimeError("conformance: a handler failure")
            done[body(message)] += 1

    consumer = Consumer(queue, handler, max_workers=2, max_handlers=2, messages_bulk_size=3)
    with consumer:
        wait_until(lambda: set(done) == set(bodies), timeout, message="consumer drained the queue")
        wait_until(lambda: consumer.statistics().in_flight == 0, timeout)
    stats = consumer.statistics()
    assert stats.errors == 0, f"queue errors while consuming: {stats.last_error}"
    if exactly_once:
        _assert_empty(queue, timeout=1.0)
