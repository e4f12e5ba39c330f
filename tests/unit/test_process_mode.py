"""Process mode: handlers run in child processes that can die, hang or fail to start.

Each handler slot owns one child; what happens to a child fails exactly its own chunk,
the slot starts a new child, and the consumer goes on. Nothing hangs, nothing is lost.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import core_handlers
import pytest
import robust_handlers
from fakes import RecordingQueue
from robust_handlers import read_trace

from queue_consumer import ConfigurationError, Consumer, MemoryQueue, State
from queue_consumer.testing import wait_until

DEADLINE = 30  # generous: starting handler processes is slow on a loaded machine


def process_consumer(queue: Any, handler: Any, **kwargs: Any) -> Consumer:
    kwargs.setdefault("max_workers", 1)
    kwargs.setdefault("max_handlers", 2)
    return Consumer(queue, handler, with_thread_executor=False, **kwargs)


def traced_consumer(queue: Any, path: str, **kwargs: Any) -> Consumer:
    """A process-mode consumer whose initializer and handler write their pid to ``path``."""
    kwargs.setdefault("pool_initializer", functools.partial(robust_handlers.record_init, path))
    return process_consumer(queue, functools.partial(robust_handlers.record_pid, path), **kwargs)


def pids_in(path: str, event: str) -> list[int]:
    return [int(words[1]) for words in read_trace(path) if words[0] == event]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_gone(pids: set[int]) -> None:
    """Every pid has exited and been reaped (forkserver children are not our children)."""
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("mp_context", [None, "spawn"], ids=["default", "spawn"])
def test_initializer_runs_once_in_each_child_and_handlers_run_there(
    tmp_path: Any, mp_context: str | None
) -> None:
    path = str(tmp_path / "trace")
    queue = MemoryQueue()
    queue.put_many(range(40))
    consumer = traced_consumer(
        queue,
        path,
        max_handlers=2,
        mp_context=mp_context,
    )
    with consumer:
        wait_until(lambda: queue.deleted == 40, timeout=DEADLINE)

    init_pids = pids_in(path, "init")
    handler_pids = set(pids_in(path, "handle"))
    parent = os.getpid()
    assert consumer.statistics().failed == 0  # record_pid fails where the initializer did not run
    assert parent not in init_pids and parent not in handler_pids
    assert len(init_pids) == len(set(init_pids)) <= 2  # once per child, one child per slot
    assert handler_pids <= set(init_pids)
    assert_gone(set(init_pids))


def first_delivery_failures(thread_mode: bool, handler: Any, bulk: int) -> tuple[Any, ...]:
    queue = RecordingQueue()
    queue.put_many(range(30))
    consumer = Consumer(
        queue,
        handler,
        max_workers=1,
        max_handlers=2,
        messages_bulk_size=bulk,
        with_thread_executor=thread_mode,
    )
    with consumer:
        wait_until(lambda: queue.deleted == 30, timeout=DEADLINE)
    stats = consumer.statistics()
    return (
        stats.received,
        stats.started,
        stats.succeeded,
        stats.failed,
        stats.released,
        stats.in_flight,
        stats.errors,
        dict(queue.cleaned),
        dict(queue.rejected),
    )


@pytest.mark.parametrize(
    ("handler", "bulk"),
    [
        (functools.partial(robust_handlers.fail_first_delivery_of_multiples, 3), 1),
        (functools.partial(robust_handlers.partial_fail_first_delivery_of_multiples, 3), 4),
        # Regression: in a handler thread, SystemExit escaped and its chunk never settled.
        (functools.partial(robust_handlers.exit_on_first_delivery_of_multiples, 3), 1),
    ],
    ids=["iterator", "partial-failure", "sys-exit"],
)
def test_processes_split_success_and_failure_like_threads(handler: Any, bulk: int) -> None:
    in_threads = first_delivery_failures(True, handler, bulk)
    in_processes = first_delivery_failures(False, handler, bulk)

    assert in_processes == in_threads
    multiples = {n for n in range(30) if n % 3 == 0}
    received, started, succeeded, failed, released, in_flight, errors, cleaned, rejected = (
        in_processes
    )
    assert (received, started, succeeded, failed, released, in_flight, errors) == (
        40,
        40,
        30,
        10,
        0,
        0,
        0,
    )
    assert cleaned == dict.fromkeys(range(30), 1)
    assert rejected == dict.fromkeys(multiples, 1)


def test_unpicklable_message_fails_its_chunk_and_the_rest_go_on() -> None:
    queue = RecordingQueue(reject_delay=0.2)  # the lock comes back, slowly
    queue.put_many([0, 1, threading.Lock(), 3, 4])
    consumer = process_consumer(queue, core_handlers.noop)
    with consumer:
        wait_until(lambda: queue.deleted == 4, timeout=DEADLINE)
        wait_until(lambda: consumer.statistics().failed >= 2, timeout=DEADLINE)
    stats = consumer.statistics()

    assert "pickl" in (stats.last_error or "")
    assert sorted(queue.cleaned) == [0, 1, 3, 4]
    assert len(queue) == 1  # the unpicklable message is still there, not lost
    assert stats.in_flight == 0


def test_message_that_will_not_unpickle_in_the_child_fails_and_the_child_goes_on(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "trace")
    queue = RecordingQueue(reject_delay=0.2)
    queue.put_many([0, robust_handlers.PicklesButWontUnpickle(), 2, 3])
    consumer = traced_consumer(
        queue,
        path,
        max_handlers=1,
    )
    with consumer:
        wait_until(lambda: queue.deleted == 3, timeout=DEADLINE)
        wait_until(lambda: consumer.statistics().failed >= 1, timeout=DEADLINE)
    stats = consumer.statistics()

    assert "could not be unpickled" in (stats.last_error or "")
    assert "this body cannot be unpickled" in (stats.last_error or "")
    assert sorted(queue.cleaned) == [0, 2, 3] and len(queue) == 1
    assert len(pids_in(path, "init")) == 1  # the child survived it: no restart needed


def test_unpicklable_exception_is_recorded_as_text() -> None:
    queue = RecordingQueue(reject_delay=0.2)
    queue.put_many(["a", "b", "c"])
    consumer = process_consumer(queue, core_handlers.raise_unpicklable, messages_bulk_size=3)
    with consumer:
        wait_until(lambda: consumer.statistics().failed >= 3, timeout=DEADLINE)
    stats = consumer.statistics()

    assert "UnpicklableError" in (stats.last_error or "")
    assert "no pickle" in (stats.last_error or "")
    assert stats.succeeded == 0 and queue.deleted == 0 and len(queue) == 3
    assert stats.in_flight == 0


def test_child_killed_from_outside_fails_its_chunk_and_a_new_child_goes_on(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "trace")
    queue = RecordingQueue()
    queue.put_many(["block", *range(10)])
    consumer = process_consumer(
        queue, functools.partial(robust_handlers.block_first_delivery, path), max_handlers=1
    )
    with consumer:
        wait_until(lambda: pids_in(path, "blocked"), timeout=DEADLINE)
        (victim,) = pids_in(path, "blocked")
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: queue.deleted == 11, timeout=DEADLINE)
    stats = consumer.statistics()

    assert queue.rejected == {"block": 1}
    assert queue.cleaned == dict.fromkeys(["block", *range(10)], 1)
    assert stats.failed == 1 and stats.succeeded == 11
    assert "died" in (stats.last_error or "") and "-9" in (stats.last_error or "")
    survivors = set(pids_in(path, "handle"))
    assert victim not in survivors and survivors  # one slot: it had to start a new child
    assert_gone(survivors | {victim})


def test_child_killed_between_chunks_fails_nothing(tmp_path: Any) -> None:
    # Regression: the next chunk used to fail (broken pipe) though no handler ever saw it.
    path = str(tmp_path / "trace")
    queue = RecordingQueue()
    queue.put("first")
    consumer = traced_consumer(
        queue,
        path,
        max_handlers=1,
    )
    with consumer:
        wait_until(lambda: queue.deleted == 1, timeout=DEADLINE)
        (idle,) = pids_in(path, "init")
        os.kill(idle, signal.SIGKILL)
        wait_until(lambda: not alive(idle), timeout=DEADLINE)  # dead, pipe closed, reaped
        queue.put("second")
        wait_until(lambda: queue.deleted == 2, timeout=DEADLINE)
    stats = consumer.statistics()

    assert stats.failed == 0 and not queue.rejected
    assert stats.last_error is None
    assert pids_in(path, "handle") == [idle, pids_in(path, "init")[1]]


def test_child_that_dies_mid_chunk_fails_the_whole_chunk(tmp_path: Any) -> None:
    path = str(tmp_path / "trace")
    queue = RecordingQueue(max_messages=3)
    queue.put_many(["before", "die", "after"])
    consumer = process_consumer(
        queue,
        functools.partial(robust_handlers.die_on_first_delivery, path),
        max_handlers=1,
        messages_bulk_size=3,
    )
    with consumer:
        wait_until(lambda: queue.deleted == 3, timeout=DEADLINE)
    stats = consumer.statistics()

    handled = [(words[2], words[3]) for words in read_trace(path) if words[0] == "handle"]
    assert ("before", "1") in handled  # it was done, but its process died with the chunk
    # Its outcome never reached the parent, so the whole chunk failed and came back.
    assert queue.rejected == dict.fromkeys(["before", "die", "after"], 1)
    assert queue.cleaned == dict.fromkeys(["before", "die", "after"], 1)
    assert stats.failed == 3 and stats.succeeded == 3
    (dead,) = pids_in(path, "dying")
    assert_gone({dead, *pids_in(path, "handle")})


def test_stuck_child_is_killed_by_supervise_and_its_chunk_fails(tmp_path: Any) -> None:
    path = str(tmp_path / "trace")
    queue = RecordingQueue()
    queue.put_many(["block", *range(5)])
    consumer = process_consumer(
        queue,
        functools.partial(robust_handlers.block_first_delivery, path),
        max_handlers=1,
        handler_timeout=2.0,  # far above a chunk's time, even on a loaded machine
        max_stuck_handlers=0,
    )
    with consumer:
        consumer.supervise(polling_time=0.05)
        wait_until(lambda: queue.deleted == 6, timeout=DEADLINE)
        # A process can be killed, so a stuck one does not count against max_stuck_handlers.
        assert consumer.state is State.RUNNING
    stats = consumer.statistics()

    assert stats.handlers_stuck == 1
    assert queue.rejected == {"block": 1}
    assert stats.failed == 1 and stats.succeeded == 6
    assert "handler_timeout" in (stats.last_error or "")
    assert consumer.join(timeout=0) is True  # stopped cleanly, nothing fatal to re-raise
    (victim,) = pids_in(path, "blocked")
    assert victim not in pids_in(path, "handle")
    assert_gone({victim, *pids_in(path, "handle")})


def test_slow_initializer_is_not_counted_as_a_stuck_handler() -> None:
    # Regression: the clock used to start before the child had run pool_initializer, so
    # an initializer slower than handler_timeout got every new child killed: no progress.
    queue = RecordingQueue()
    queue.put_many(range(3))
    consumer = process_consumer(
        queue,
        core_handlers.noop,
        max_handlers=1,
        pool_initializer=functools.partial(time.sleep, 1.0),
        handler_timeout=0.5,
    )
    with consumer:
        consumer.supervise(polling_time=0.05)
        wait_until(lambda: queue.deleted == 3, timeout=DEADLINE)
    stats = consumer.statistics()

    assert stats.handlers_stuck == 0
    assert stats.failed == 0 and not queue.rejected


def test_failing_initializer_fails_chunks_clearly_and_loses_nothing() -> None:
    queue = RecordingQueue(reject_delay=0.2)
    queue.put_many(range(5))
    consumer = process_consumer(
        queue, core_handlers.noop, pool_initializer=core_handlers.failing_initializer
    )
    with consumer:
        wait_until(lambda: consumer.statistics().failed >= 5, timeout=DEADLINE)
    stats = consumer.statistics()

    assert "pool_initializer" in (stats.last_error or "")
    assert "initializer exploded" in (stats.last_error or "")
    assert stats.succeeded == 0 and not queue.cleaned
    assert queue.deleted == 0 and len(queue) == 5
    assert queue.stats()["in_flight"] == 0  # each was rejected (or released), none left leased
    assert stats.in_flight == 0


def _local_handler(messages: Any) -> None:
    pass


@pytest.mark.parametrize(
    "argument",
    [
        {"handler": lambda messages: None},
        {"handler": functools.partial(lambda n, messages: None, 1)},
        {"handler": core_handlers.noop, "pool_initializer": lambda: None},
    ],
    ids=["lambda", "partial-of-lambda", "lambda-initializer"],
)
def test_unpicklable_handler_or_initializer_is_refused_at_construction(
    argument: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError, match="pickl"):
        Consumer(MemoryQueue(), with_thread_executor=False, **argument)


def test_local_function_handler_is_refused_at_construction() -> None:
    def handler(messages: Any) -> None:
        pass

    with pytest.raises(ConfigurationError, match="pickl"):
        Consumer(MemoryQueue(), handler, with_thread_executor=False)
    Consumer(MemoryQueue(), handler)  # threads need no pickling


def test_shutdown_joins_every_child(tmp_path: Any) -> None:
    path = str(tmp_path / "trace")
    queue = MemoryQueue()
    queue.put_many(range(30))
    consumer = traced_consumer(
        queue,
        path,
        max_handlers=3,
    )
    consumer.start()
    try:
        wait_until(lambda: queue.deleted == 30, timeout=DEADLINE)
        wait_until(lambda: pids_in(path, "init"), timeout=DEADLINE)
        children = set(pids_in(path, "init"))
        for pid in children:
            os.kill(pid, 0)  # alive while the consumer runs
    finally:
        consumer.shutdown()

    assert_gone(children)
    assert not [p for p in multiprocessing.active_children() if p.name == "queue_consumer-handler"]


def test_in_a_bulk_chunk_only_the_unpicklable_message_fails() -> None:
    queue = RecordingQueue(reject_delay=600)  # nothing comes back: one delivery each
    queue.put_many(["ok0", threading.Lock(), "fail2", "ok3"])
    consumer = process_consumer(queue, core_handlers.fail_on_body, messages_bulk_size=4)
    with consumer:
        wait_until(lambda: consumer.statistics().in_flight == 0 and queue.deleted, DEADLINE)
    stats = consumer.statistics()
    # The handler got ok0, fail2, ok3: it failed at fail2, so fail2 and ok3 failed with the lock.
    assert sorted(queue.cleaned) == ["ok0"]
    assert sum(queue.rejected.values()) == 3 and queue.rejected["fail2"] == 1
    assert (stats.succeeded, stats.failed) == (1, 3)
    assert "could not be pickled" in (stats.last_error or "")
    assert "cannot handle fail2" in (stats.last_error or "")


def test_an_unpicklable_message_does_not_fail_its_neighbours() -> None:
    queue = RecordingQueue(reject_delay=600)
    lock = threading.Lock()
    queue.put_many(["ok0", lock, "ok2", "ok3"])
    consumer = process_consumer(queue, core_handlers.noop, messages_bulk_size=4)
    with consumer:
        wait_until(lambda: queue.deleted == 3, DEADLINE)
        wait_until(lambda: consumer.statistics().in_flight == 0, DEADLINE)
    assert sorted(queue.cleaned) == ["ok0", "ok2", "ok3"]
    assert queue.rejected == {lock: 1}


def test_a_failing_initializer_backs_off_instead_of_spinning_children(tmp_path: Any) -> None:
    path = str(tmp_path / "trace")
    queue = RecordingQueue(reject_delay=0)  # failed messages come straight back
    queue.put_many(range(3))
    consumer = process_consumer(
        queue,
        core_handlers.noop,
        max_handlers=1,
        pool_initializer=functools.partial(robust_handlers.record_init_and_fail, path),
    )
    with consumer:
        wait_until(lambda: len(pids_in(path, "init")) >= 3, timeout=DEADLINE)
    starts = [float(words[2]) for words in read_trace(path) if words[0] == "init"]
    # Lower bounds only: a loaded machine makes the gaps longer, never shorter.
    assert starts[1] - starts[0] >= 0.45
    assert starts[2] - starts[1] >= 0.95
    assert queue.deleted == 0 and len(queue) == 3  # nothing lost meanwhile
