"""With tracing on, every broker adapter's put carries the current trace context in the
message's headers, and the consumer's span (observability.otel) reads it back from there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is not installed")
from opentelemetry.sdk.trace import TracerProvider

from queue_consumer.testing import wait_until


@contextmanager
def postgres_queue() -> Iterator[Any]:
    if __package__:
        from .postgres_helpers import HOST, PORT, SERVER, Database, require_server
    else:
        from postgres_helpers import HOST, PORT, SERVER, Database, require_server

    require_server("PostgreSQL", HOST, PORT)
    database = Database(SERVER)
    try:
        yield database.queue(wait_time=0.2)
    finally:
        database.drop()


@contextmanager
def rabbitmq_queue() -> Iterator[Any]:
    if __package__:
        from .rabbitmq_server import RabbitMQQueue, server_url, unique
    else:
        from rabbitmq_server import RabbitMQQueue, server_url, unique

    queue = RabbitMQQueue(server_url(), unique(), wait_time=0.2)
    try:
        yield queue
    finally:
        queue.delete()
        queue.close()


@contextmanager
def nats_queue() -> Iterator[Any]:
    pytest.importorskip("nats", reason="the [nats] extra (nats-py) is not installed")
    if __package__:
        from .nats_server import HOST, PORT, SHARED, delete_streams, require_server, unique
    else:
        from nats_server import HOST, PORT, SHARED, delete_streams, require_server, unique
    from queue_consumer.adapters.nats import JetStreamQueue

    require_server("NATS", HOST, PORT)
    queue = JetStreamQueue(unique(), servers=SHARED, wait_time=0.5)
    try:
        yield queue
    finally:
        queue.close()
        delete_streams(SHARED, [queue.stream, f"{queue.stream}_DEAD"])


@pytest.mark.parametrize(
    "open_queue", [postgres_queue, rabbitmq_queue, nats_queue], ids=["postgres", "rabbitmq", "nats"]
)
def test_put_carries_the_current_trace_context(
    open_queue: Callable[[], AbstractContextManager[Any]],
) -> None:
    provider = TracerProvider()
    with open_queue() as queue:
        with provider.get_tracer("producer").start_as_current_span("send") as span:
            queue.put("traced")
        queue.put("untraced")
        got: list[Any] = []
        wait_until(lambda: got.extend(queue.get()) or len(got) >= 2, timeout=30)
        queue.cleanup(got)
    by_body = {message.body: dict(message.headers or {}) for message in got}
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace_id in by_body["traced"].get("traceparent", "")
    assert "traceparent" not in by_body["untraced"]
    provider.shutdown()
