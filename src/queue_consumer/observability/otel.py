"""OpenTelemetry tracing: one CONSUMER span per chunk, ``process <queue>`` (extra ``[otel]``).

Only the API is needed; you configure the SDK (``TracerProvider``, exporters), or
``opentelemetry-instrument`` does. The span follows the messaging semantic conventions
(v1.30+: ``messaging.operation.name="process"``, ``messaging.destination.name``,
``messaging.batch.message_count`` or ``messaging.message.id``, ``error.type``).

- The trace context of each message (SQS: the ``traceparent`` message attribute, else the
  ``AWSTraceHeader`` system attribute; other queues: a ``headers`` mapping) is the span's
  parent for a chunk of one message, and a link per message for a batch.
- The handler runs inside the span's context: in thread mode in the slot's thread, in
  process mode in the child, which gets the context with the chunk (the core enters the
  picklable callable ``handler_context`` yields). A span the handler starts is a child.
- A failed handler sets status ERROR, ``error.type`` and one ``exception`` event.
- With ``meter_provider``: the semconv instruments ``messaging.client.consumed.messages``,
  ``messaging.process.duration`` and ``messaging.client.operation.duration``.

::

    consumer = Consumer(queue, handler, hooks=[OTelHooks(queue)])

Do not also enable ``opentelemetry-instrumentation-boto3sqs``: it is not thread-safe with
the consumer's pools; the botocore instrumentation is fine.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import __version__
from .._hooks import ConsumerHooks
from . import logs
from ._common import error_type, message_id, messaging_system, queue_name

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "tracing needs opentelemetry-api: pip install queue-consumer[otel]", name=exc.name
    ) from exc

__all__ = ["OTelHooks", "attached", "carrier_of", "xray_to_traceparent"]

_SCOPE = "queue_consumer"


class OTelHooks(ConsumerHooks):
    """Traces each chunk of ``queue`` (the queue, or its name) as a ``process`` span.

    ``parent_from_message`` (default True) makes a lone message's context the span's
    parent; False links it instead. ``attributes`` are added to every span; ``system``
    overrides ``messaging.system`` (derived from the queue's class).
    """

    def __init__(
        self,
        queue: Any,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: otel_metrics.MeterProvider | None = None,
        parent_from_message: bool = True,
        attributes: Mapping[str, Any] | None = None,
        system: str | None = None,
    ) -> None:
        name = queue_name(queue)
        self.span_name = f"process {name}"
        self.parent_from_message = parent_from_message
        self._attributes: dict[str, Any] = {
            "messaging.system": system or messaging_system(queue),
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": name,
            **(attributes or {}),
        }
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        self._local = threading.local()
        self._meters = _Instruments(meter_provider, self._attributes) if meter_provider else None

    def handler_context(self, chunk: Sequence[Any]) -> _ProcessSpan:
        return _ProcessSpan(self, chunk)

    def _start(self, chunk: Sequence[Any]) -> trace.Span:
        """Start the chunk's span (it ends in ``on_chunk_finished``, which knows the outcome)."""
        self._end_stale()
        fields = _fields()
        contexts = [_span_context(carrier_of(message, fields)) for message in chunk]
        valid = [c for c in contexts if c is not None]
        parent = None
        links = []
        if len(chunk) == 1 and valid and self.parent_from_message:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(valid[0]))
        else:
            links = [Link(c) for c in valid]
        attributes = dict(self._attributes)
        if len(chunk) == 1:
            identity = message_id(chunk[0])
            if identity is not None:
                attributes["messaging.message.id"] = identity
        else:
            attributes["messaging.batch.message_count"] = len(chunk)
        span = self._tracer.start_span(
            self.span_name,
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        self._local.span = span
        ids = span.get_span_context()
        logs.set_trace(ids.trace_id, ids.span_id)
        return span

    def on_chunk_finished(
        self, succeeded: Sequence[Any], failed: Sequence[Any], error: str | None, duration: float
    ) -> None:
        span = getattr(self._local, "span", None)
        self._local.span = None  # logs keep its ids: the failure is logged after this
        kind = error_type(error)
        if self._meters is not None:
            self._meters.processed(duration, kind)
        if span is None:
            return
        if error is not None:
            message = _last_line(error)
            span.set_attribute("error.type", kind)
            if failed and succeeded:
                span.set_attribute("queue_consumer.messages.failed", len(failed))
            span.add_event(
                "exception",
                {
                    "exception.type": kind,
                    "exception.message": message,
                    "exception.stacktrace": error,
                },
            )
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()

    def on_received(self, messages: Sequence[Any]) -> None:
        if self._meters is not None:
            self._meters.consumed(len(messages))

    def on_get(self, count: int, duration: float, error: BaseException | None) -> None:
        if self._meters is not None:
            self._meters.operation("receive", duration, error)

    def on_settled(
        self, stage: str, messages: Sequence[Any], duration: float, error: BaseException | None
    ) -> None:
        if self._meters is not None:
            self._meters.operation(stage, duration, error)

    def _end_stale(self) -> None:
        """A chunk that shutdown took away never finished: end its span here."""
        span = getattr(self._local, "span", None)
        if span is not None:
            span.set_attribute("queue_consumer.abandoned", True)
            span.end()
            self._local.span = None


@contextlib.contextmanager
def attached(carrier: dict[str, str]) -> Iterator[None]:
    """Make ``carrier``'s trace context current (in a handler process, around the handler)."""
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


class _ProcessSpan:
    """``OTelHooks.handler_context``: the chunk's span is current in the slot's thread while
    the handler runs; what it yields carries the span into a handler process."""

    __slots__ = ("_chunk", "_hooks", "_token")

    def __init__(self, hooks: OTelHooks, chunk: Sequence[Any]) -> None:
        self._hooks = hooks
        self._chunk = chunk
        self._token: object = None

    def __enter__(self) -> _Attach:
        span = self._hooks._start(self._chunk)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return _Attach(span)

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]


class _Attach:
    """What ``handler_context`` yields: a zero-argument callable that makes the span's context
    current. It pickles (process mode) as ``partial(attached, carrier)``, the W3C carrier
    made only then: a thread-mode chunk pays nothing for it."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def __call__(self) -> contextlib.AbstractContextManager[object]:
        return attached(self._carrier())

    def __reduce__(self) -> tuple[Any, ...]:
        return functools.partial, (attached, self._carrier())

    def _carrier(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(self._span))
        return carrier


_FIELDS: tuple[Any, set[str]] = (None, set())


def _fields() -> set[str]:
    """The carrier keys the global propagator reads (cached while it stays the same)."""
    global _FIELDS
    textmap = propagate.get_global_textmap()
    if _FIELDS[0] is not textmap:
        _FIELDS = (textmap, set(textmap.fields) or {"traceparent", "tracestate"})
    return _FIELDS[1]


def carrier_of(message: Any, fields: set[str] | None = None) -> dict[str, str] | None:
    """The trace context a message carries, as a text-map carrier, or None."""
    fields = _fields() if fields is None else fields
    attributes = getattr(message, "message_attributes", None)  # SQS
    if isinstance(attributes, Mapping) and attributes:
        carrier = {}
        for key in fields:
            entry = attributes.get(key)
            value = entry.get("StringValue") if isinstance(entry, Mapping) else entry
            if isinstance(value, str) and value:
                carrier[key] = value
        if carrier:
            return carrier
    system = getattr(message, "attributes", None)  # SQS system attributes: X-Ray
    if isinstance(system, Mapping):
        header = system.get("AWSTraceHeader")
        traceparent = xray_to_traceparent(header) if isinstance(header, str) else None
        if traceparent is not None:
            return {"traceparent": traceparent}
    headers = getattr(message, "headers", None)
    if isinstance(headers, Mapping) and headers:
        lowered = {str(k).lower(): v for k, v in headers.items()}
        carrier = {k: str(lowered[k]) for k in fields if lowered.get(k) is not None}
        if carrier:
            return carrier
    return None


def xray_to_traceparent(header: str) -> str | None:
    """``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`` ->
    ``00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01`` (None if malformed).

    >>> header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    >>> xray_to_traceparent(header)
    '00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01'
    """
    parts = dict(part.strip().partition("=")[::2] for part in header.split(";") if "=" in part)
    root, parent = parts.get("Root", ""), parts.get("Parent", "")
    pieces = root.split("-")
    if len(pieces) != 3 or pieces[0] != "1" or len(parent) != 16:
        return None
    trace_id = pieces[1] + pieces[2]
    try:
        int(trace_id, 16), int(parent, 16)
    except ValueError:
        return None
    if len(trace_id) != 32:
        return None
    return f"00-{trace_id}-{parent}-{'01' if parts.get('Sampled') == '1' else '00'}"


def _span_context(carrier: dict[str, str] | None) -> trace.SpanContext | None:
    if carrier is None:
        return None
    context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return context if context.is_valid else None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


class _Instruments:
    """The semconv messaging metrics, through an OTel meter."""

    def __init__(self, provider: otel_metrics.MeterProvider, attributes: Mapping[str, Any]) -> None:
        meter = provider.get_meter(_SCOPE, __version__)
        self.base = {
            key: attributes[key] for key in ("messaging.system", "messaging.destination.name")
        }
        self._consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}", description="Messages received"
        )
        self._process = meter.create_histogram(
            "messaging.process.duration", unit="s", description="Handler seconds per chunk"
        )
        self._operation = meter.create_histogram(
            "messaging.client.operation.duration", unit="s", description="Queue operation seconds"
        )

    def consumed(self, count: int) -> None:
        self._consumed.add(count, {**self.base, "messaging.operation.name": "receive"})

    def processed(self, duration: float, kind: str) -> None:
        attributes = {**self.base, "messaging.operation.name": "process"}
        if kind:
            attributes["error.type"] = kind
        self._process.record(duration, attributes)

    def operation(self, name: str, duration: float, error: BaseException | None) -> None:
        attributes = {**self.base, "messaging.operation.name": name}
        if error is not None:
            attributes["error.type"] = error_type(error)
        self._operation.record(duration, attributes)
