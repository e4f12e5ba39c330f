"""The delete combiner: concurrent callers share statements, each gets its own result."""

from __future__ import annotations

import threading

import pytest

from queue_consumer.adapters.postgres._combining import Combiner
from queue_consumer.testing import wait_until


def test_a_lone_call_runs_at_once() -> None:
    calls: list[list[int]] = []
    combiner = Combiner(lambda keys: calls.append(keys) or {k for k in keys if k % 2})
    assert combiner([1, 2, 3]) == {1, 3}
    assert calls == [[1, 2, 3]]


def test_callers_arriving_meanwhile_share_the_next_statement() -> None:
    running = threading.Event()
    release = threading.Event()
    calls: list[list[int]] = []

    def apply(keys: list[int]) -> set[int]:
        calls.append(keys)
        if len(calls) == 1:
            running.set()
            release.wait(10)
        return set(keys) - {5}

    combiner = Combiner(apply)
    results: dict[int, set[int]] = {}
    first = threading.Thread(target=lambda: results.update({0: combiner([0])}))
    first.start()
    running.wait(10)
    others = [
        threading.Thread(target=lambda n=n: results.update({n: combiner([n, n + 10])}))
        for n in range(1, 6)
    ]
    for thread in others:
        thread.start()
    # All five wait behind the running statement (no timer: they are queued).
    wait_until(lambda: len(combiner._waiting) == 5, timeout=10)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert calls[0] == [0]
    assert len(calls) == 2
    assert sorted(calls[1]) == sorted(k for n in range(1, 6) for k in (n, n + 10))
    assert results == {0: {0}, **{n: {n, n + 10} - {5} for n in range(1, 6)}}


def test_an_error_reaches_every_caller_of_that_statement() -> None:
    def apply(keys: list[int]) -> set[int]:
        raise ConnectionError("lost")

    combiner = Combiner(apply)
    with pytest.raises(ConnectionError):
        combiner([1])
    with pytest.raises(ConnectionError):  # and the combiner is usable afterwards
        combiner([2])
