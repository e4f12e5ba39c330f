"""The Redis adapter's group commit: concurrent cleanups share round trips, each call
gets its own results (or its round trip's error), and nothing waits for ever."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from queue_consumer.adapters.redis._coalesce import Coalescer
from queue_consumer.testing import wait_until


class GatedFlush:
    """A flush that records its batches and, while ``gate`` is clear, blocks."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.fail_next = False

    def __call__(self, items: list[int]) -> Sequence[bool]:
        self.batches.append(list(items))
        self.entered.set()
        self.gate.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("lost")
        return [item % 2 == 0 for item in items]


def test_an_uncontended_call_goes_at_once() -> None:
    flush = GatedFlush()
    flush.gate.set()
    coalesce = Coalescer(flush)
    assert coalesce([1, 2, 3]) == [False, True, False]
    assert flush.batches == [[1, 2, 3]]
    assert (coalesce.calls, coalesce.round_trips) == (1, 1)


def test_calls_made_during_a_round_trip_share_the_next() -> None:
    flush = GatedFlush()
    coalesce = Coalescer(flush)
    results: dict[int, Sequence[bool]] = {}

    def call(items: list[int]) -> None:
        results[items[0]] = coalesce(items)

    first = threading.Thread(target=call, args=([0],))
    first.start()
    assert flush.entered.wait(5)
    others = [threading.Thread(target=call, args=([n, n + 1],)) for n in (10, 20, 30)]
    for thread in others:
        thread.start()
    wait_until(lambda: len(coalesce._queue) == 3, timeout=5)
    flush.gate.set()
    for thread in [first, *others]:
        thread.join(5)
    assert flush.batches[0] == [0]
    assert sorted(flush.batches[1]) == [10, 11, 20, 21, 30, 31]  # one round trip for three
    assert len(flush.batches) == 2
    assert results == {0: [True], 10: [True, False], 20: [True, False], 30: [True, False]}


def test_an_error_reaches_every_call_of_its_round_trip_only() -> None:
    flush = GatedFlush()
    coalesce = Coalescer(flush)
    errors: list[BaseException] = []
    done: list[Sequence[bool]] = []

    def call(items: list[int]) -> None:
        try:
            done.append(coalesce(items))
        except ConnectionError as exc:
            errors.append(exc)

    flush.fail_next = True
    first = threading.Thread(target=call, args=([1],))
    first.start()
    assert flush.entered.wait(5)
    second = threading.Thread(target=call, args=([2],))
    second.start()
    wait_until(lambda: len(coalesce._queue) == 1, timeout=5)
    flush.gate.set()
    first.join(5)
    second.join(5)
    assert len(errors) == 1 and done == [[True]]  # the first failed; the second went next
    assert coalesce([4]) == [True]  # and it still works


def test_many_threads_nothing_lost() -> None:
    flush = GatedFlush()
    flush.gate.set()
    coalesce = Coalescer(flush)
    seen: list[int] = []
    lock = threading.Lock()

    def work(base: int) -> None:
        for n in range(base, base + 200):
            assert list(coalesce([n])) == [n % 2 == 0]
            with lock:
                seen.append(n)

    threads = [threading.Thread(target=work, args=(b * 1000,)) for b in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen) == 1600
    assert sorted(item for batch in flush.batches for item in batch) == sorted(seen)
    assert coalesce.round_trips <= coalesce.calls


@pytest.mark.parametrize("size", [0, 1])
def test_sizes(size: int) -> None:
    coalesce: Coalescer[int, int] = Coalescer(lambda items: [i * 2 for i in items])
    assert list(coalesce(list(range(size)))) == [i * 2 for i in range(size)]
