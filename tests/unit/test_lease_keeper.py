"""The shared lease keeper, driven by a fake clock and beat() (no thread, no waiting)."""

from __future__ import annotations

import threading

from queue_consumer.adapters._lease import LeaseKeeper
from queue_consumer.testing import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_leases_held_past_the_period_are_extended_with_their_age() -> None:
    clock, calls = Clock(), []
    keeper: LeaseKeeper[str] = LeaseKeeper(
        lambda due: calls.append(dict(due)) or [], 10, name="t", enabled=False, clock=clock
    )
    keeper.track(["a"])
    clock.now += 6
    keeper.track(["b"])
    assert keeper.beat() == 0 and calls == []
    clock.now += 5  # a held 11 s, b 5 s
    assert keeper.beat() == 1
    assert calls == [{"a": 11.0}]
    clock.now += 6  # b due now; a re-leased 6 s ago
    keeper.beat()
    assert calls[-1] == {"b": 11.0}


def test_lost_keys_are_dropped_and_untrack_reports_when_each_was_received() -> None:
    clock = Clock()
    keeper: LeaseKeeper[int] = LeaseKeeper(lambda due: [2], 1, name="t", enabled=False, clock=clock)
    keeper.track([1, 2])
    clock.now += 2
    assert keeper.beat() == 1
    assert keeper.held() == 1
    assert keeper.untrack([1, 2, 3]) == {1: 100.0}
    assert keeper.held() == 0


def test_untrack_waits_for_an_extension_in_flight() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_extend(due: dict[str, float]) -> list[str]:
        entered.set()
        release.wait(10)
        return []

    clock = Clock()
    keeper: LeaseKeeper[str] = LeaseKeeper(slow_extend, 1, name="t", enabled=False, clock=clock)
    keeper.track(["a"])
    clock.now += 2
    beat = threading.Thread(target=keeper.beat)
    beat.start()
    assert entered.wait(10)
    untracked = threading.Event()
    settle = threading.Thread(target=lambda: (keeper.untrack(["a"]), untracked.set()))
    settle.start()
    assert not untracked.wait(0.2), "untrack returned while an extension was in flight"
    release.set()
    beat.join(10)
    settle.join(10)
    assert untracked.is_set()


def test_the_thread_extends_and_survives_a_failing_extension() -> None:
    calls: list[dict[str, float]] = []

    def extend(due: dict[str, float]) -> list[str]:
        calls.append(due)
        if len(calls) == 1:
            raise ConnectionError("broker away")
        return []

    keeper: LeaseKeeper[str] = LeaseKeeper(extend, 0.05, name="t")
    try:
        keeper.track(["a"])
        wait_until(lambda: keeper.extensions >= 2, timeout=10)
        assert len(calls) >= 3
    finally:
        keeper.close()
