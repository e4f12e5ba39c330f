"""Log lines that say which chunk they are about: queue, message ids, trace and span ids.

``LogContext`` is both a hook and a ``logging.Filter``: the hook notes the chunk a handler
slot is on (in that slot's thread), the filter copies it onto every record logged from
that thread meanwhile, as the attributes ``queue``, ``message_ids`` and, while
``OTelHooks`` traces the chunk, ``trace_id`` and ``span_id``. The CLI's JSON lines show
them; with your own logging, add the filter to your handler::

    context = LogContext(queue)
    logging.getLogger().handlers[0].addFilter(context)
    consumer = Consumer(queue, handler, hooks=[context, OTelHooks(queue)])
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .._hooks import ConsumerHooks
from ._common import message_id, queue_name

__all__ = ["FIELDS", "LogContext"]

#: The record attributes this module sets (the CLI's JSON formatter writes them out).
FIELDS = ("queue", "message_ids", "trace_id", "span_id")

_local = threading.local()


def set_trace(trace_id: int, span_id: int) -> None:
    """Note the span of the chunk this thread is on (``OTelHooks`` calls this)."""
    _local.trace = (format(trace_id, "032x"), format(span_id, "016x"))


class LogContext(ConsumerHooks, logging.Filter):
    """Puts ``queue``, ``message_ids`` (at most ``max_ids``), ``trace_id`` and ``span_id`` on
    the log records of a chunk's slot thread, from the chunk's start until that slot starts
    its next chunk: the lines about a chunk's failure and settling come after its handler."""

    def __init__(self, queue: Any = None, *, max_ids: int = 100) -> None:
        logging.Filter.__init__(self)
        self.queue = None if queue is None else queue_name(queue)
        self.max_ids = max_ids

    def on_chunk_started(self, chunk: Sequence[Any]) -> None:
        ids = [message_id(message) for message in chunk[: self.max_ids]]
        _local.chunk = [i for i in ids if i is not None]

    def filter(self, record: logging.LogRecord) -> bool:
        ids = getattr(_local, "chunk", None)
        if ids is not None:
            if self.queue is not None and not hasattr(record, "queue"):
                record.queue = self.queue
            if not hasattr(record, "message_ids"):
                record.message_ids = ids
        trace = getattr(_local, "trace", None) or _current_span()
        if trace is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = trace
        return True


def _current_span() -> tuple[str, str] | None:
    """The current OTel span's ids (a handler's own log lines), if OTel is in use at all."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
