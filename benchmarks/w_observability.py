"""OBS: what observability costs. W1's no-op handler over an in-memory queue, bulk 1, with
the Prometheus hooks on and /metrics scraped every second, and with OTel tracing through
the SDK into a span processor that discards, each beside the same run without them."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from queue_consumer import Consumer, ConsumerHooks

from . import _runners
from ._harness import Plan, Row, Target
from ._queues import CountingQueue

WORKERS, HANDLERS = 1, 4  # W1's tuned consumer


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def plan(quick: bool) -> Plan:
    n = 30_000 if quick else 100_000
    spec = {"module": "w_observability"}
    config = f"max_workers={WORKERS}, max_handlers={HANDLERS}, bulk 1"
    rows = [
        Row(
            "bare", "bare loop", "1 thread: get 10, handle, cleanup 10", n, {**spec, "run": "bare"}
        ),
        Row("plain", "Consumer", config, n, {**spec, "run": "plain"}),
        Row(
            "hooked",
            "Consumer + ConsumerHooks()",
            f"{config}; one no-op hook (the core's hook calls alone)",
            n,
            {**spec, "run": "hooked"},
        ),
        Row(
            "prometheus",
            "Consumer + PrometheusHooks",
            f"{config}; /metrics scraped every 1 s",
            n,
            {**spec, "run": "prometheus"},
        ),
        Row(
            "otel",
            "Consumer + OTelHooks",
            f"{config}; OTel SDK, a span per chunk, discarded",
            n,
            {**spec, "run": "otel"},
        ),
        Row(
            "plain10",
            "Consumer",
            config.replace("bulk 1", "bulk 10"),
            n,
            {**spec, "run": "plain", "bulk": 10},
        ),
        Row(
            "otel10",
            "Consumer + OTelHooks",
            config.replace("bulk 1", "bulk 10") + "; a span per chunk of 10",
            n,
            {**spec, "run": "otel", "bulk": 10},
        ),
    ]
    return Plan(
        "OBS",
        "OBS observability cost: no-op handler, in-memory queue, bulk 1",
        rows,
        references=["plain", "bare"],
        targets=[
            Target("OBS Prometheus hooks + scrapes vs without", "prometheus", "plain", 0.9),
            Target("OBS OTel tracing (SDK, discarding) vs without", "otel", "plain", 0.5),
            Target("OBS OTel tracing, bulk 10, vs without", "otel10", "plain10", 0.5),
        ],
        runs=3,
    )


def _scrape_every_second(url: str, stop: threading.Event, scrapes: list[int]) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        scrapes.append(1)


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    queue = CountingQueue(spec["n"])
    if spec["run"] == "bare":
        seconds = _runners.bare_loop(queue, noop)
        problems = queue.problems()
        return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems)}
    hooks: list[Any] = [ConsumerHooks()] if spec["run"] == "hooked" else []
    server: Any = None
    provider: Any = None
    if spec["run"] == "prometheus":
        from queue_consumer.observability.prometheus import PrometheusHooks

        hooks.append(PrometheusHooks())
    elif spec["run"] == "otel":
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        from queue_consumer.observability.otel import OTelHooks

        class Discard(SpanProcessor):
            """Every span is made, started and ended for real, then dropped."""

        provider = TracerProvider()
        provider.add_span_processor(Discard())
        hooks.append(OTelHooks(queue, tracer_provider=provider))
    consumer = Consumer(
        queue,
        noop,
        max_workers=WORKERS,
        max_handlers=HANDLERS,
        messages_bulk_size=spec.get("bulk", 1),
        hooks=hooks,
    )
    stop, scrapes = threading.Event(), []
    scraper = None
    if spec["run"] == "prometheus":
        from queue_consumer.observability.server import serve

        server = serve(consumer, port=0, metrics=hooks[0])
        scraper = threading.Thread(
            target=_scrape_every_second, args=(server.url + "/metrics", stop, scrapes)
        )
    started = time.perf_counter()
    consumer.start()
    if scraper is not None:
        scraper.start()
    try:
        _runners._wait_done(queue, lambda: queue.exhausted and consumer.statistics().in_flight == 0)
    finally:
        stop.set()
        if scraper is not None:
            scraper.join()
        consumer.shutdown()
        if server is not None:
            server.close()
        if provider is not None:
            provider.shutdown()
    stats = consumer.statistics()
    counts = {
        "received": stats.received,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "released": stats.released,
        "in_flight": stats.in_flight,
        "errors": stats.errors,
    }
    problems = _runners.check_statistics(counts, queue.n) + queue.problems()
    seconds = queue.finished_at - started
    if spec["run"] == "prometheus" and seconds > 2 and not scrapes:
        problems.append("/metrics was never scraped")
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems)}
