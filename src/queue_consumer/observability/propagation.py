"""Producers: put the current trace context on outgoing messages (when OTel is in use).

``inject_trace_context(attributes)`` returns ``attributes`` with the W3C ``traceparent``
(and ``tracestate``, ``baggage``) of the current span added, or unchanged when
opentelemetry-api is not installed or no span is current. Attributes already set win;
``limit`` caps how many there may be (SQS allows 10 message attributes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["inject_trace_context"]

_UNSET: Any = object()
_otel: Any = _UNSET  # (propagate, trace) once imported; None if OTel is not installed


def _load() -> Any:
    global _otel
    if _otel is _UNSET:  # try the import once: a failed import is not cached by Python
        try:
            from opentelemetry import propagate, trace
        except ImportError:
            _otel = None
        else:
            _otel = (propagate, trace)
    return _otel


def inject_trace_context(
    attributes: Mapping[str, Any] | None = None, *, limit: int | None = None
) -> Mapping[str, Any] | None:
    """``attributes`` plus the current trace context, if there is one (see the module)."""
    otel = _load()
    if otel is None:
        return attributes
    propagate, trace = otel
    if not trace.get_current_span().get_span_context().is_valid:
        return attributes
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return attributes
    merged = dict(attributes or {})
    for key, value in carrier.items():
        if key in merged:
            continue
        if limit is not None and len(merged) >= limit:
            break
        merged[key] = value
    return merged
