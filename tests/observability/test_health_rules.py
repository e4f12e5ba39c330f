"""The health rules one by one, on a stand-in consumer whose statistics the test sets.

The same states are reached with real consumers in test_health.py; here each rule's edges
(the bounds, what does not count) are pinned down exactly and fast.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from queue_consumer import State
from queue_consumer.errors import ConfigurationError
from queue_consumer.observability._sampler import Sample
from queue_consumer.observability.health import HealthHooks


class Queue:
    wait_time_seconds = 20

    def __init__(self) -> None:
        self.backlog = 0

    def get(self) -> list[Any]:
        return []

    def stats(self) -> dict[str, int]:
        return {"visible": self.backlog}


class Standin:
    """What HealthHooks reads of a consumer: ``queue``, ``state``, ``statistics()``."""

    def __init__(self, **stats: Any) -> None:
        self.queue = Queue()
        self.state = State.RUNNING
        now = time.time()
        self.stats = SimpleNamespace(
            received=0,
            last_error=None,
            last_get_at=now,
            last_get_ok=True,
            supervised_at=now,
            in_get_for=0.0,
            workers_alive=2,
            workers_total=2,
            handlers_busy=0,
            handlers_total=4,
        )
        vars(self.stats).update(stats)

    def statistics(self) -> Any:
        return self.stats


def _health(consumer: Standin, **options: Any) -> HealthHooks:
    health = HealthHooks(**{"stall_after": 60.0, "stall_sample": 15.0, **options}).bind(consumer)
    sampler = health._sampler
    if sampler is not None and sampler._thread is not None:  # the test writes the samples
        sampler.close()
        sampler._thread.join(10)
    return health


def test_all_well() -> None:
    verdict = _health(Standin()).check()
    assert (verdict.live, verdict.ready, verdict.stalled, verdict.reason) == (
        True,
        True,
        False,
        "ok",
    )


def test_a_supervise_loop_that_stopped_ticking() -> None:
    consumer = Standin(supervised_at=time.time() - 11)
    verdict = _health(consumer, supervise_within=10).check()
    assert not verdict.live and not verdict.ready
    assert verdict.reason.startswith("the supervise loop has not ticked for 11s")
    consumer.stats.supervised_at = None  # never supervised (a library user's choice): no rule
    assert _health(consumer).check().live


def test_get_is_hung_past_the_queues_wait_plus_a_minute() -> None:
    consumer = Standin(in_get_for=79.0)
    assert _health(consumer).check().live  # SQS: wait 20 s + 60 s
    consumer.stats.in_get_for = 81.0
    verdict = _health(consumer).check()
    assert not verdict.live and "hung in get() for 81s (> 80s)" in verdict.reason
    assert _health(consumer, get_stall_after=100).check().live


def test_dead_workers_count_once_supervise_had_time_to_revive_them() -> None:
    consumer = Standin(workers_alive=1)
    health = _health(consumer, supervise_within=0.05)
    assert health.check().live  # just died: the next tick revives it
    time.sleep(0.06)  # the rule is about elapsed time itself
    consumer.stats.supervised_at = time.time()
    verdict = health.check()
    assert not verdict.live and "1 of 2 workers dead" in verdict.reason
    consumer.stats.workers_alive = 2
    assert health.check().live


def test_a_failing_get_is_not_ready_but_live() -> None:
    consumer = Standin(
        last_get_ok=False,
        last_error="get: Traceback...\nEndpointConnectionError: Could not connect",
    )
    verdict = _health(consumer).check()
    assert verdict.live and not verdict.ready
    assert verdict.reason == ("get() is failing: EndpointConnectionError: Could not connect")


@pytest.mark.parametrize(
    ("state", "live", "reason"),
    [
        (State.NEW, True, "starting: the consumer was not started yet"),
        (State.STOPPING, True, "stopping: draining handlers"),
        (State.STOPPED, False, "the consumer stopped"),
    ],
)
def test_lifecycle(state: State, live: bool, reason: str) -> None:
    consumer = Standin()
    consumer.state = state
    verdict = _health(consumer).check()
    assert (verdict.live, verdict.ready, verdict.reason) == (live, False, reason)


def test_running_without_a_completed_get_is_starting() -> None:
    verdict = _health(Standin(last_get_at=None)).check()
    assert verdict.live and not verdict.ready
    assert verdict.reason == "starting: no get() has completed yet"


def _history(health: HealthHooks, *samples: tuple[float, int, int, int]) -> None:
    """(seconds ago, backlog, received, free slots) per sample, oldest first."""
    assert health._sampler is not None
    now = time.time()
    health._sampler._samples.clear()
    for ago, backlog, received, free in samples:
        health._sampler._samples.append(Sample(now - ago, {}, backlog, received, free))


STALLED = ((61, 5, 3, 2), (45, 5, 3, 2), (30, 5, 3, 2), (15, 5, 3, 2), (1, 5, 3, 2))


def test_stalled_needs_backlog_free_slots_and_no_receipt_over_the_window() -> None:
    consumer = Standin(received=3)
    health = _health(consumer)
    _history(health, *STALLED)
    verdict = health.check()
    assert verdict.stalled and verdict.live and not verdict.ready
    assert verdict.reason == (
        "stalled: 5 message(s) wait, 2 handler slot(s) free, nothing received for 61s"
    )
    assert not _health(consumer, stall_is_fatal=True).check().live


@pytest.mark.parametrize(
    "history",
    [
        STALLED[1:],  # the window is not covered yet
        (*STALLED[:-1], (1, 0, 3, 2)),  # the backlog is gone (an idle queue)
        (*STALLED[:-1], (1, 5, 3, 0)),  # no free slot (a saturated consumer)
        (*STALLED[:-1], (1, 5, 4, 2)),  # something was received
        tuple((ago + 50, *rest) for ago, *rest in STALLED),  # the sampler fell behind
    ],
)
def test_not_stalled(history: tuple[tuple[float, int, int, int], ...]) -> None:
    health = _health(Standin(received=3))
    _history(health, *history)
    assert not health.check().stalled


def test_a_receipt_after_the_last_sample_ends_the_stall() -> None:
    consumer = Standin(received=4)
    health = _health(consumer)
    _history(health, *STALLED)
    assert not health.check().stalled


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="stall_after"):
        HealthHooks(stall_after=-1)
    with pytest.raises(ConfigurationError, match="supervise_within"):
        HealthHooks(supervise_within="soon")
