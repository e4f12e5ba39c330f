"""Is the consumer live, ready, stalled? Probes that a restart or a load balancer can trust.

- **Live** is false only when a restart would help: the supervise loop stopped ticking, a
  worker is hung inside ``get()`` past a bound derived from the queue's wait time, workers
  died and were not revived, the consumer stopped (too many stuck handlers stop it), or it
  is stalled and ``stall_is_fatal`` says a stall should restart it. An idle queue, all
  handler slots busy with handlers within their timeout, and a broker that is down all
  stay live.
- **Ready** is false while starting (until the first ``get()`` completed), from the first
  SIGTERM on (state STOPPING), while ``get()`` keeps failing (the broker is down), while
  stalled, and whenever not live.
- **Stalled**: the queue reports a backlog (``queue.stats()``: ``visible``, else ``depth``),
  a handler slot is free, and nothing was received for ``stall_after`` seconds, in every
  sample of that window. An alarm (the ``queue_consumer_stalled`` metric, a log line, a
  readiness reason); it cannot fire on an idle queue nor on a saturated one.

::

    health = HealthHooks(stall_after=120, health_file="/tmp/healthy")
    consumer = Consumer(queue, handler, hooks=[health])
    health.bind(consumer)          # serve(consumer, health=health) binds it too
    consumer.health()              # Health(live=True, ready=False, stalled=False, ...)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._checks import flag, optional, seconds
from .._hooks import ConsumerHooks
from ._sampler import QueueSampler, Sample, sampler_for

__all__ = ["Health", "HealthHooks", "check", "check_file"]

log = logging.getLogger("queue_consumer.observability.health")

_WAIT_ATTRIBUTES = ("wait_time_seconds", "wait_time", "wait", "block", "poll_timeout")
_GET_MARGIN = 60.0  # seconds past the queue's wait time before a get() counts as hung


@dataclass(frozen=True)
class Health:
    """One verdict: ``live``, ``ready``, ``stalled`` and the ``reasons`` behind any false."""

    live: bool
    ready: bool
    stalled: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """The reasons in one line ("ok" when there is none)."""
        return "; ".join(self.reasons) or "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "ready": self.ready,
            "stalled": self.stalled,
            "reason": self.reason,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


class HealthHooks(ConsumerHooks):
    """Judges a consumer's health; the supervise tick touches ``health_file`` while live.

    ``stall_after`` (seconds, None: no stall detection) is the stall window, sampled every
    ``stall_sample`` seconds (default a quarter of the window, at most 15).
    ``get_stall_after`` bounds one ``get()`` (default the queue's wait time + 60 s);
    ``supervise_within`` is how old the last supervise tick (and a dead worker) may be.
    Call ``bind(consumer)`` (``serve()`` does) before asking it.
    """

    def __init__(
        self,
        *,
        stall_after: float | None = 60.0,
        stall_sample: float | None = None,
        stall_is_fatal: bool = False,
        get_stall_after: float | None = None,
        supervise_within: float = 10.0,
        health_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.stall_after = optional(seconds, "stall_after", stall_after, positive=True)
        sample = optional(seconds, "stall_sample", stall_sample, positive=True)
        if sample is None and self.stall_after is not None:
            sample = min(self.stall_after / 4, 15.0)
        self.stall_sample = sample
        self.stall_is_fatal = flag("stall_is_fatal", stall_is_fatal)
        self.get_stall_after = optional(seconds, "get_stall_after", get_stall_after, positive=True)
        self.supervise_within = seconds("supervise_within", supervise_within, positive=True)
        self.health_file = None if health_file is None else os.fspath(health_file)
        self.consumer: Any = None
        self._sampler: QueueSampler | None = None
        self._lock = threading.Lock()
        self._dead_since: float | None = None
        self._stalled = False

    def bind(self, consumer: Any) -> HealthHooks:
        """Judge ``consumer`` (whose ``hooks`` should include this object); returns self."""
        self.consumer = consumer
        if self.get_stall_after is None:
            self.get_stall_after = _get_bound(consumer.queue)
        if self.stall_after is not None and self.stall_sample is not None:
            self._sampler = sampler_for(consumer, self.stall_sample)
            if not self._sampler.available:
                self._sampler = None  # no stats(): only live and ready apply
        with _MONITORS_LOCK:
            _MONITORS[consumer] = self
        return self

    def check(self) -> Health:
        """The consumer's health now."""
        consumer = self.consumer
        if consumer is None:
            raise RuntimeError("HealthHooks.bind(consumer) first")
        return self._judge(consumer, consumer.statistics(), time.time())

    # -- hooks --------------------------------------------------------------------------

    def on_supervise(self, statistics: Any) -> None:
        if self.consumer is None:
            return
        health = self._judge(self.consumer, statistics, time.time())
        if health.live and self.health_file is not None:
            _touch(self.health_file)

    # -- the rules ----------------------------------------------------------------------

    def _judge(self, consumer: Any, stats: Any, now: float) -> Health:
        state = getattr(consumer.state, "value", str(consumer.state))
        not_live: list[str] = []
        not_ready: list[str] = []
        if state == "new":
            not_ready.append("starting: the consumer was not started yet")
        elif state == "stopping":
            not_ready.append("stopping: draining handlers")
        elif state == "stopped":
            not_live.append("the consumer stopped")
        if state == "running":
            not_live += self._liveness(stats, now)
            last_get_at = getattr(stats, "last_get_at", None)
            if last_get_at is None:
                not_ready.append("starting: no get() has completed yet")
            elif getattr(stats, "last_get_ok", None) is False:
                error = _first_line(getattr(stats, "last_error", None))
                not_ready.append(f"get() is failing: {error}" if error else "get() is failing")
        stall = self._stall(consumer, stats, now) if state == "running" else None
        self._note_stall(stall)
        if stall is not None:
            (not_live if self.stall_is_fatal else not_ready).append(stall)
        live = not not_live
        return Health(live, live and not not_ready, stall is not None, (*not_live, *not_ready))

    def _liveness(self, stats: Any, now: float) -> list[str]:
        reasons = []
        supervised_at = getattr(stats, "supervised_at", None)
        if supervised_at is not None and now - supervised_at > self.supervise_within:
            reasons.append(f"the supervise loop has not ticked for {now - supervised_at:.0f}s")
        in_get_for = getattr(stats, "in_get_for", 0.0) or 0.0
        bound = self.get_stall_after or _GET_MARGIN
        if in_get_for > bound:
            reasons.append(f"a worker is hung in get() for {in_get_for:.0f}s (> {bound:.0f}s)")
        alive, total = getattr(stats, "workers_alive", None), getattr(stats, "workers_total", None)
        with self._lock:
            if alive is None or total is None or alive >= total:
                self._dead_since = None
            elif self._dead_since is None:
                self._dead_since = now
            dead_for = 0.0 if self._dead_since is None else now - self._dead_since
        if dead_for > self.supervise_within and alive is not None and total is not None:
            reasons.append(f"{total - alive} of {total} workers dead for {dead_for:.0f}s")
        return reasons

    def _stall(self, consumer: Any, stats: Any, now: float) -> str | None:
        """Why the consumer is stalled, or None: see the module docstring."""
        sampler, window = self._sampler, self.stall_after
        if sampler is None or window is None:
            return None
        samples = [s for s in sampler.history() if s.running]
        start = _window_start(samples, now - window)
        if start is None:
            return None
        recent = samples[start:]
        if not all(_waiting(s) and s.received == recent[0].received for s in recent):
            return None
        if stats.received != recent[0].received:
            return None
        if now - recent[-1].at > max(3 * sampler.interval, 1.0):  # the sampler fell behind
            return None
        last = recent[-1]
        return (
            f"stalled: {last.backlog} message(s) wait, {last.free_slots} handler slot(s) free, "
            f"nothing received for {now - recent[0].at:.0f}s"
        )

    def _note_stall(self, stall: str | None) -> None:
        with self._lock:
            was, self._stalled = self._stalled, stall is not None
        if stall is not None and not was:
            log.error("queue consumer %s", stall)
        elif stall is None and was:
            log.warning("queue consumer no longer stalled")


def check(consumer: Any, hooks: Iterable[ConsumerHooks] = ()) -> Health:
    """``consumer.health()``: judged by its bound ``HealthHooks``, one among ``hooks``, or a
    default one (created on first use: its stall detector starts sampling then)."""
    with _MONITORS_LOCK:
        monitor = _MONITORS.get(consumer)
    if monitor is None:
        found = [hook for hook in hooks if isinstance(hook, HealthHooks)]
        monitor = (found[0] if found else HealthHooks()).bind(consumer)
    return monitor.check()


def check_file(path: str | os.PathLike[str], max_age: float) -> tuple[bool, str]:
    """For ``queue-consumer health --file``: was ``path`` touched within ``max_age`` s?"""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False, f"{os.fspath(path)} does not exist: the consumer is not live (yet)"
    except OSError as exc:
        return False, f"cannot read {os.fspath(path)}: {exc.strerror}"
    if age > max_age:
        return False, f"{os.fspath(path)} is {age:.0f}s old (> {max_age:g}s): not live"
    return True, f"live ({os.fspath(path)} touched {age:.1f}s ago)"


_MONITORS: weakref.WeakKeyDictionary[Any, HealthHooks] = weakref.WeakKeyDictionary()
_MONITORS_LOCK = threading.Lock()


def _get_bound(queue: Any) -> float:
    declared = getattr(queue, "get_stall_after", None)
    if isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared > 0:
        return float(declared)
    for name in _WAIT_ATTRIBUTES:
        wait = getattr(queue, name, None)
        if isinstance(wait, (int, float)) and not isinstance(wait, bool):
            return float(wait) + _GET_MARGIN
    return _GET_MARGIN


def _window_start(samples: Sequence[Sample], since: float) -> int | None:
    """Index of the newest sample taken at or before ``since`` (the window's first)."""
    for index in range(len(samples) - 1, -1, -1):
        if samples[index].at <= since:
            return index
    return None


def _waiting(sample: Sample) -> bool:
    """Work waits and a slot is free (unknown free slots count as free)."""
    return bool(sample.backlog) and (sample.free_slots is None or sample.free_slots > 0)


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _touch(path: str) -> None:
    try:
        with open(path, "a"):
            pass
        os.utime(path)
    except OSError as exc:
        log.warning("cannot touch the health file %s: %s", path, exc.strerror)
