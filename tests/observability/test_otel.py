"""Spans through the real OpenTelemetry SDK (in-memory exporter): per chunk, with parents,
links and errors, across SQS (moto) from producer to consumer, in threads and processes."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

import obs_handlers
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from queue_consumer import Consumer
from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.cli._logging import JSONFormatter
from queue_consumer.observability.logs import LogContext
from queue_consumer.observability.otel import OTelHooks, carrier_of
from queue_consumer.observability.propagation import inject_trace_context
from queue_consumer.testing import wait_until


@dataclass(frozen=True)
class Message:
    id: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict, compare=False)


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _process_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("process ")]


def _carrier(provider: TracerProvider, name: str = "send") -> tuple[dict[str, str], Any]:
    """A producer span's context as message headers."""
    with provider.get_tracer("producer").start_as_current_span(name) as span:
        headers = dict(inject_trace_context({}) or {})
    return headers, span.get_span_context()


def test_a_batch_links_every_message_and_a_lone_message_is_a_child(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    hooks = OTelHooks("orders", tracer_provider=provider, system="rabbitmq")
    producers = [_carrier(provider, f"send {i}") for i in range(3)]
    batch = [Message(i, headers=headers) for i, (headers, _) in enumerate(producers)]
    with hooks.handler_context(batch):
        inner = trace.get_current_span().get_span_context()
    hooks.on_chunk_finished(batch, [], None, 0.1)
    with hooks.handler_context(batch[:1]):
        pass
    hooks.on_chunk_finished(batch[:1], [], None, 0.1)
    first, second = _process_spans(exporter)
    assert first.name == "process orders" and first.kind is SpanKind.CONSUMER
    assert first.context.span_id == inner.span_id  # the handler ran inside the span
    assert [link.context.span_id for link in first.links] == [c.span_id for _, c in producers]
    assert first.parent is None
    assert first.attributes["messaging.batch.message_count"] == 3
    assert first.attributes["messaging.system"] == "rabbitmq"
    assert first.attributes["messaging.operation.name"] == "process"
    assert first.attributes["messaging.destination.name"] == "orders"
    assert second.parent is not None and second.parent.span_id == producers[0][1].span_id
    assert second.context.trace_id == producers[0][1].trace_id
    assert second.attributes["messaging.message.id"] == "0"


def test_a_failed_chunk_is_an_error(tracing: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = tracing
    hooks = OTelHooks("orders", tracer_provider=provider)
    chunk = [Message(1), Message(2)]
    with hooks.handler_context(chunk):
        pass
    error = "Traceback (most recent call last):\n  File x\nValueError: bad input"
    hooks.on_chunk_finished(chunk[:1], chunk[1:], error, 0.2)
    (span,) = _process_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad input"
    assert span.attributes["error.type"] == "ValueError"
    assert span.attributes["queue_consumer.messages.failed"] == 1
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"


def test_carriers_of_sqs_messages() -> None:
    from queue_consumer.adapters.sqs import SQSMessage

    traceparent = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
    attributes = {"traceparent": {"StringValue": traceparent, "DataType": "String"}}
    with_attribute = SQSMessage("id", "r", "b", message_attributes=attributes)
    assert carrier_of(with_attribute) == {"traceparent": traceparent}
    xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with_xray = SQSMessage("id", "r", "b", attributes={"AWSTraceHeader": xray})
    assert carrier_of(with_xray) == {"traceparent": traceparent}
    assert carrier_of(SQSMessage("id", "r", "b")) is None


def test_inject_only_with_a_current_span(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = tracing
    assert inject_trace_context({"a": 1}) == {"a": 1}
    with provider.get_tracer("t").start_as_current_span("send"):
        injected = inject_trace_context({"a": 1})
        full = inject_trace_context({str(i): i for i in range(10)}, limit=10)
    assert injected is not None and set(injected) == {"a", "traceparent"}
    assert full is not None and "traceparent" not in full


def test_the_handler_runs_in_the_span_of_its_chunk(
    make_sqlite: Callable[..., SQLiteQueue], tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    queue = make_sqlite(max_attempts=1)
    queue.put_many(["1", "2", "7"])
    tracer = provider.get_tracer("handler")

    def handler(messages: Iterator[Any]) -> None:
        with tracer.start_as_current_span("work"):
            obs_handlers.handle(messages)

    hooks = [OTelHooks(queue, tracer_provider=provider)]
    consumer = Consumer(queue, handler, max_workers=1, max_handlers=1, hooks=hooks)
    with consumer:
        wait_until(lambda: len(_process_spans(exporter)) == 3, timeout=10)
    spans = exporter.get_finished_spans()
    processes = {s.context.span_id: s for s in _process_spans(exporter)}
    works = [s for s in spans if s.name == "work"]
    assert len(works) == 3
    assert all(w.parent is not None and w.parent.span_id in processes for w in works)
    errors = [s for s in processes.values() if s.status.status_code is StatusCode.ERROR]
    assert len(errors) == 1 and errors[0].attributes["error.type"] == "ValueError"
    assert all(s.attributes["messaging.system"] == "sqlite" for s in processes.values())


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_producer_to_sqs_to_consumer_is_one_trace(
    mode: str,
    make_queue: Callable[..., str],
    tracing: tuple[TracerProvider, InMemorySpanExporter],
    tmp_path: Path,
) -> None:
    from queue_consumer.adapters.sqs import SQSQueue

    provider, exporter = tracing
    out = tmp_path / "seen.txt"
    with SQSQueue(queue_url=make_queue(), wait_time_seconds=1) as queue:
        with provider.get_tracer("producer").start_as_current_span(
            "send", kind=SpanKind.PRODUCER
        ) as producer:
            queue.put(json.dumps({"out": str(out)}))
        consumer = Consumer(
            queue,
            obs_handlers.record_trace,
            max_workers=1,
            max_handlers=1,
            with_thread_executor=mode == "threads",
            hooks=[OTelHooks(queue, tracer_provider=provider)],
        )
        with consumer:
            wait_until(lambda: len(_process_spans(exporter)) == 1, timeout=60)
    (span,) = _process_spans(exporter)
    sent = producer.get_span_context()
    assert span.context.trace_id == sent.trace_id
    assert span.parent is not None and span.parent.span_id == sent.span_id
    assert span.attributes["messaging.system"] == "aws_sqs"
    assert span.attributes["messaging.destination.name"] == queue.queue_name
    trace_id, span_id, pid = out.read_text().split()
    assert int(trace_id, 16) == sent.trace_id  # the handler saw the consumer span...
    assert int(span_id, 16) == span.context.span_id
    assert (int(pid) != os.getpid()) is (mode == "processes")  # ...in the child too


def test_log_lines_of_a_failed_chunk_carry_queue_ids_and_trace(
    make_sqlite: Callable[..., SQLiteQueue], tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    queue = make_sqlite(max_attempts=1)
    queue.put("7")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    context = LogContext(queue)
    handler.addFilter(context)
    root = logging.getLogger()
    root.addHandler(handler)
    hooks = [context, OTelHooks(queue, tracer_provider=provider)]
    consumer = Consumer(queue, obs_handlers.handle, max_workers=1, max_handlers=1, hooks=hooks)
    try:
        with consumer:
            wait_until(lambda: consumer.statistics().failed == 1, timeout=10)
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (failed,) = [line for line in lines if "handler failed" in line["message"]]
    assert failed["queue"] == queue.queue
    assert failed["message_ids"] == ["1"]
    (span,) = _process_spans(exporter)
    assert failed["trace_id"] == format(span.context.trace_id, "032x")
    assert failed["span_id"] == format(span.context.span_id, "016x")


TRACED_TASKS = """
import os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, ConsoleSpanExporter

# What a user's own start-up code (or opentelemetry-instrument) does: configure the SDK.
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
    out=open(os.environ["SPANS_OUT"], "a"), formatter=lambda span: span.to_json(indent=None) + "\\n"
)))
trace.set_tracer_provider(_provider)


def handle(messages):
    for message in messages:
        if message.body == "bad":
            raise ValueError("bad message")
"""


def test_cli_otel_traces_and_logs_trace_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}?queue=mail&max_attempts=1"
    (tmp_path / "tasks.py").write_text(TRACED_TASKS)
    spans = tmp_path / "spans.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SPANS_OUT": str(spans)}
    python = [sys.executable, "-m", "queue_consumer"]
    subprocess.run(
        [*python, "send", url, "-"], input="ok\nbad\n", text=True, check=True, env=env, cwd=tmp_path
    )
    command = [*python, "run", "tasks:handle", "--queue", url, "--otel", "--log-format", "json"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)

    def exported() -> list[dict[str, Any]]:
        text = spans.read_text() if spans.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    try:
        wait_until(lambda: len(exported()) == 2, timeout=30)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert {span["name"] for span in exported()} == {"process mail"}
    (error,) = [s for s in exported() if s["status"]["status_code"] == "ERROR"]
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (failed,) = [line for line in logged if "handler failed" in line["message"]]
    assert failed["queue"] == "mail"
    assert failed["trace_id"] == error["context"]["trace_id"].removeprefix("0x")
    assert failed["span_id"] == error["context"]["span_id"].removeprefix("0x")


def test_what_handler_context_yields_pickles_as_the_spans_carrier(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    import pickle

    provider, _ = tracing
    hooks = OTelHooks("orders", tracer_provider=provider)
    with hooks.handler_context([Message(1)]) as enter:
        inside = trace.get_current_span().get_span_context()
        shipped = pickle.loads(pickle.dumps(enter))
    hooks.on_chunk_finished([Message(1)], [], None, 0.0)
    assert trace.get_current_span().get_span_context().is_valid is False
    for make in (enter, shipped):  # in the parent's thread, and as a child would get it
        with make():
            seen = trace.get_current_span().get_span_context()
        assert (seen.trace_id, seen.span_id) == (inside.trace_id, inside.span_id)


def test_semconv_metrics_through_a_meter() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    hooks = OTelHooks("orders", meter_provider=meters, system="rabbitmq")
    hooks.on_received([Message(1), Message(2)])
    hooks.on_chunk_finished([Message(1)], [Message(2)], "ValueError: no", 0.5)
    hooks.on_get(2, 0.01, None)
    hooks.on_settled("cleanup", [Message(1)], 0.02, None)
    data = reader.get_metrics_data()
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    (consumed,) = points["messaging.client.consumed.messages"]
    assert consumed.value == 2
    assert consumed.attributes["messaging.destination.name"] == "orders"
    (processed,) = points["messaging.process.duration"]
    assert processed.sum == 0.5 and processed.attributes["error.type"] == "ValueError"
    operations = {
        p.attributes["messaging.operation.name"]: p
        for p in points["messaging.client.operation.duration"]
    }
    assert set(operations) == {"receive", "cleanup"}
    meters.shutdown()
