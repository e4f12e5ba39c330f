"""``queue.stats()`` sampled on a thread of its own: never on the consumer's hot path.

One sampler per consumer, shared by the metrics (queue depth) and the stall detector. A
slow or failing ``stats()`` (a broker that is down) delays nothing but the next sample.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._common import backlog

log = logging.getLogger("queue_consumer.observability")

_HISTORY = 512  # samples kept: at 15 s apiece, two hours


@dataclass(frozen=True)
class Sample:
    """One look at the queue and the consumer, at ``at`` (``time.time()``)."""

    at: float
    stats: Mapping[str, Any] | None  #: what ``queue.stats()`` returned; None if it failed
    backlog: int | None  #: messages waiting (visible), if the queue can tell
    received: int  #: the consumer's ``received`` counter then
    free_slots: int | None  #: handler slots free then, if the consumer can tell
    error: str | None = None  #: why ``stats()`` failed
    running: bool = True  #: the consumer was RUNNING then


class QueueSampler:
    """Calls ``queue.stats()`` every ``interval`` seconds while the consumer is not stopped."""

    def __init__(self, consumer: Any, interval: float) -> None:
        self.consumer = consumer
        self.interval = interval
        stats = getattr(consumer.queue, "stats", None)
        self.available = callable(stats)
        self._stats = stats
        self._samples: deque[Sample] = deque(maxlen=_HISTORY)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def latest(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def history(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or not self.available:
                return
            self._thread = threading.Thread(
                target=self._run, name="queue_consumer-stats-sampler", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._closed.set()

    def sample(self) -> Sample:
        """Take one sample now (the thread does this every ``interval``)."""
        at = time.time()
        stats: Mapping[str, Any] | None = None
        error = None
        if self._stats is not None:
            try:
                stats = dict(self._stats())
            except Exception as exc:  # a broker that is down: the next sample may work
                error = f"{type(exc).__name__}: {exc}"
                log.debug("queue.stats() failed: %s", error)
        statistics = self.consumer.statistics()
        total = getattr(statistics, "handlers_total", None)
        busy = getattr(statistics, "handlers_busy", None)
        free = None if total is None or busy is None else max(total - busy, 0)
        running = getattr(self.consumer.state, "value", None) == "running"
        sample = Sample(at, stats, backlog(stats), statistics.received, free, error, running)
        with self._lock:
            self._samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._closed.is_set():
            if getattr(self.consumer.state, "value", None) == "stopped":
                return
            self.sample()
            self._closed.wait(self.interval)


_SAMPLERS: weakref.WeakKeyDictionary[Any, QueueSampler] = weakref.WeakKeyDictionary()
_SAMPLERS_LOCK = threading.Lock()


def sampler_for(consumer: Any, interval: float) -> QueueSampler:
    """The consumer's sampler, started; a shorter ``interval`` than it has speeds it up."""
    with _SAMPLERS_LOCK:
        sampler = _SAMPLERS.get(consumer)
        if sampler is None:
            sampler = _SAMPLERS[consumer] = QueueSampler(consumer, interval)
        sampler.interval = min(sampler.interval, interval)
    sampler.start()
    return sampler
