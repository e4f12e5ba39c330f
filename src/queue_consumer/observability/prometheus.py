"""Prometheus metrics of a consumer, in its own registry (extra ``[prometheus]``).

Counters and gauges are read from ``consumer.statistics()`` at scrape time by a custom
collector, so they cost nothing per message and can never drift from the consumer's own
counters. Only what statistics cannot tell comes from hooks: the handler duration per
chunk, the duration of each queue operation, errors by stage and type. In process mode
everything runs in the parent (it settles), so no multiprocess directory is needed.

::

    metrics = PrometheusHooks()
    consumer = Consumer(queue, handler, hooks=[metrics])
    with serve(consumer, port=9191, metrics=metrics):   # /metrics, /livez, /readyz
        consumer.start()
        consumer.supervise(blocking=True)

``metrics.registry`` is a plain ``CollectorRegistry``: ``prometheus_client.start_http_server(
port, registry=metrics.registry)`` or ``generate_latest(metrics.registry)`` work too, once
``metrics.bind(consumer)`` was called.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from .._checks import seconds
from .._hooks import ConsumerHooks
from ._common import error_type, messaging_system, queue_name
from ._sampler import QueueSampler, sampler_for

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector, CollectorRegistry
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "Prometheus metrics need prometheus-client: pip install queue-consumer[prometheus]",
        name=exc.name,
    ) from exc

__all__ = ["OPERATION_BUCKETS", "PREFIX", "PROCESS_BUCKETS", "PrometheusHooks"]

PREFIX = "queue_consumer_"
#: Handler seconds per chunk: OTel's buckets up to 10 s, then up to an hour (job handlers).
PROCESS_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    *(30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
#: Seconds of one queue operation; a long poll takes up to its wait time (20 s on SQS).
OPERATION_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(20.0, 30.0, 60.0),
)
#: ``queue.stats()`` keys exported as ``queue_consumer_queue_messages{state=...}``.
_STATS_STATES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


class _Histogram:
    """A labelled histogram kept by hand, cheap on the hot path: each thread counts into rows
    of its own (no lock, one bisect), and a scrape adds up every thread's rows."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._local = threading.local()
        self._threads: list[dict[tuple[str, ...], list[float]]] = []  # each thread's rows
        self._lock = threading.Lock()  # only for a thread's first observation

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        try:
            rows = self._local.rows
        except AttributeError:
            rows = self._local.rows = {}
            with self._lock:
                self._threads.append(rows)
        row = rows.get(labels)
        if row is None:  # per-bucket counts, then the sum
            row = rows[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def rows(self) -> list[tuple[tuple[str, ...], list[tuple[str, float]], float]]:
        totals: dict[tuple[str, ...], list[float]] = {}
        with self._lock:
            threads = list(self._threads)
        for rows in threads:
            for labels, row in list(rows.items()):
                total = totals.setdefault(labels, [0.0] * len(row))
                for index, count in enumerate(row):
                    total[index] += count
        result = []
        bounds = [repr(bound) for bound in self.buckets] + ["+Inf"]
        for labels, row in sorted(totals.items()):
            cumulative, running = [], 0.0
            for bound, count in zip(bounds, row[:-1], strict=True):
                running += count
                cumulative.append((bound, running))
            result.append((labels, cumulative, row[-1]))
        return result


_SUCCEEDED = ("",)  # the error_type label of a chunk that succeeded


class PrometheusHooks(ConsumerHooks):
    """Hooks and a collector for one consumer; its metrics are in ``registry``.

    ``labels`` adds static labels (``{"service": "billing"}``); ``queue_stats_interval``
    is how often ``queue.stats()`` is sampled for the queue depth (never per scrape).
    ``children`` also exports what handlers in child processes record with
    prometheus-client's multiprocess mode (default: when ``PROMETHEUS_MULTIPROC_DIR`` is set).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        labels: dict[str, str] | None = None,
        process_buckets: Sequence[float] = PROCESS_BUCKETS,
        operation_buckets: Sequence[float] = OPERATION_BUCKETS,
        queue_stats_interval: float = 15.0,
        children: bool | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        if children is None:
            children = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if children:  # the handlers' own metrics, summed over every child, on the same port
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self.static_labels = dict(labels or {})
        self.queue_stats_interval = seconds(
            "queue_stats_interval", queue_stats_interval, positive=True
        )
        self._process = _Histogram(process_buckets)
        self._operations = _Histogram(operation_buckets)
        self._errors: dict[tuple[str, str], int] = {}
        self._errors_lock = threading.Lock()
        self._collector: _Collector | None = None

    def bind(self, consumer: Any, health: Any = None) -> PrometheusHooks:
        """Export ``consumer``'s metrics (and ``health``'s verdict) from ``registry``."""
        if self._collector is not None:
            if self._collector.consumer is consumer:
                return self
            raise RuntimeError("these PrometheusHooks already export another consumer")
        sampler = sampler_for(consumer, self.queue_stats_interval)
        self._collector = _Collector(self, consumer, health, sampler)
        self.registry.register(self._collector)
        return self

    # -- hooks: only what statistics() cannot tell -----------------------------------

    def on_chunk_finished(
        self, succeeded: Sequence[Any], failed: Sequence[Any], error: str | None, duration: float
    ) -> None:
        if error is None:
            self._process.observe(_SUCCEEDED, duration)
            return
        kind = error_type(error)
        self._process.observe((kind,), duration)
        self._count_error("handler", kind)

    def on_get(self, count: int, duration: float, error: BaseException | None) -> None:
        self._operations.observe(("get", "" if error is None else error_type(error)), duration)

    def on_settled(
        self, stage: str, messages: Sequence[Any], duration: float, error: BaseException | None
    ) -> None:
        self._operations.observe((stage, "" if error is None else error_type(error)), duration)

    def on_error(self, stage: str, error: BaseException) -> None:
        self._count_error(stage, error_type(error))

    def _count_error(self, stage: str, kind: str) -> None:
        with self._errors_lock:
            self._errors[stage, kind] = self._errors.get((stage, kind), 0) + 1

    def errors(self) -> dict[tuple[str, str], int]:
        with self._errors_lock:
            return dict(self._errors)


class _Collector(Collector):
    def __init__(
        self, hooks: PrometheusHooks, consumer: Any, health: Any, sampler: QueueSampler
    ) -> None:
        self.hooks = hooks
        self.consumer = consumer
        self.health = health
        self.sampler = sampler
        static = hooks.static_labels
        self.names = ["queue", "messaging_system", *static]
        self.values = [
            queue_name(consumer.queue),
            messaging_system(consumer.queue),
            *static.values(),
        ]

    def collect(self) -> Iterator[Metric]:
        stats = self.consumer.statistics()
        names, values = self.names, self.values

        def family(
            metric_type: Any, name: str, doc: str, value: float | None = None, **extra: Any
        ) -> Any:
            """A family labelled by queue, system and the names in ``extra``."""
            metric = metric_type(PREFIX + name, doc, labels=[*names, *extra])
            if value is not None:
                metric.add_metric(values, value)
            return metric

        yield family(
            CounterMetricFamily, "get_calls_total", "Calls of queue.get()", stats.get_calls
        )
        yield family(
            CounterMetricFamily,
            "messages_received_total",
            "Messages get() returned",
            stats.received,
        )
        yield family(
            CounterMetricFamily,
            "messages_started_total",
            "Messages handed to a handler",
            stats.started,
        )
        settled = family(
            CounterMetricFamily,
            "messages_settled_total",
            "Messages settled: succeeded (cleanup), failed (reject), released (never handled)",
            outcome=True,
        )
        for outcome in ("succeeded", "failed", "released"):
            settled.add_metric([*values, outcome], getattr(stats, outcome))
        yield settled
        yield family(
            CounterMetricFamily,
            "messages_dead_lettered_total",
            "Of the failed messages, those sent to dead_letter (a permanent failure)",
            stats.dead_lettered,
        )
        errors = family(
            CounterMetricFamily,
            "errors_total",
            "Errors by stage (get, cleanup, reject, release, worker, handler) and type",
            stage=True,
            error_type=True,
        )
        for (stage, kind), count in sorted(self.hooks.errors().items()):
            errors.add_metric([*values, stage, kind], count)
        yield errors
        yield family(
            CounterMetricFamily,
            "workers_revived_total",
            "Dead workers supervise started again",
            stats.workers_revived,
        )
        yield family(
            CounterMetricFamily,
            "handlers_stuck_total",
            "Handlers found running past handler_timeout",
            stats.handlers_stuck,
        )
        yield family(
            GaugeMetricFamily,
            "messages_in_flight",
            "Messages fetched, not settled",
            stats.in_flight,
        )
        for name, doc, attribute in _GAUGES:
            value = getattr(stats, attribute, None)
            if value is not None:
                yield family(GaugeMetricFamily, name, doc, value)
        progress = family(
            GaugeMetricFamily,
            "last_progress_timestamp_seconds",
            "When the last get() completed, settle completed, supervise ticked (Unix time)",
            kind=True,
        )
        for kind, attribute in (("get", "last_get_at"), ("settle", "last_settled_at")):
            at = getattr(stats, attribute, None)
            if at is not None:
                progress.add_metric([*values, kind], at)
        at = getattr(stats, "supervised_at", None)
        if at is not None:
            progress.add_metric([*values, "supervise"], at)
        yield progress
        yield from self._health()
        yield from self._queue_stats()
        yield from self._histograms()

    def _health(self) -> Iterator[Metric]:
        from .health import check

        health = self.health.check() if self.health is not None else check(self.consumer)
        for name, value, doc in (
            ("live", health.live, "1 if live (/livez would answer 200)"),
            ("ready", health.ready, "1 if ready (/readyz would answer 200)"),
            ("stalled", health.stalled, "1 if work waits, a slot is free, and nothing comes"),
        ):
            metric = GaugeMetricFamily(PREFIX + name, doc, labels=self.names)
            metric.add_metric(self.values, 1.0 if value else 0.0)
            yield metric

    def _queue_stats(self) -> Iterator[Metric]:
        sample = self.sampler.latest
        if sample is None or sample.stats is None:
            return
        metric = GaugeMetricFamily(
            PREFIX + "queue_messages",
            "Messages in the queue by state, from queue.stats() (sampled)",
            labels=[*self.names, "state"],
        )
        for state, value in _states(sample.stats).items():
            metric.add_metric([*self.values, state], value)
        yield metric
        when = GaugeMetricFamily(
            PREFIX + "queue_stats_timestamp_seconds",
            "When queue.stats() was sampled (Unix time)",
            labels=self.names,
        )
        when.add_metric(self.values, sample.at)
        yield when

    def _histograms(self) -> Iterator[Metric]:
        for name, doc, histogram, extra in (
            (
                "process_duration_seconds",
                "Handler seconds per chunk, by the error's type (empty: succeeded)",
                self.hooks._process,
                ["error_type"],
            ),
            (
                "operation_duration_seconds",
                "Seconds of one queue operation (get, cleanup, reject, release, extend)",
                self.hooks._operations,
                ["operation", "error_type"],
            ),
        ):
            metric = HistogramMetricFamily(PREFIX + name, doc, labels=[*self.names, *extra])
            for labels, buckets, total in histogram.rows():
                metric.add_metric([*self.values, *labels], buckets, total)
            yield metric


def _states(stats: Any) -> dict[str, float]:
    """``queue.stats()``'s numbers by state; a broker's own name (SQS's) only where the
    common key (``in_flight``...) is missing, so that no state is exported twice."""
    numbers = {
        key: float(value)
        for key, value in stats.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    states = {key: value for key, value in numbers.items() if key not in _STATS_STATES}
    for key, state in _STATS_STATES.items():
        if key in numbers:
            states.setdefault(state, numbers[key])
    return states


_GAUGES = (
    ("handler_slots", "Handler slots (max_handlers)", "handlers_total"),
    ("handler_slots_busy", "Handler slots running a handler", "handlers_busy"),
    ("workers", "Worker threads (max_workers)", "workers_total"),
    ("workers_alive", "Worker threads alive", "workers_alive"),
    ("jobs_parked", "Fetched jobs waiting for a free slot", "jobs_parked"),
    ("settles_pending", "Settle calls waiting or running", "settles_pending"),
    ("get_in_progress_seconds", "How long the longest current get() has run", "in_get_for"),
)
