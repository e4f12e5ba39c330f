"""Module-level handlers for the observability tests (importable by handler processes)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any


def handle(messages: Iterator[Any]) -> None:
    """Fails a message whose body is divisible by 7; sleeps ``body % 3`` milliseconds."""
    for message in messages:
        body = int(message.body)
        time.sleep((body % 3) / 1000)
        if body % 7 == 0:
            raise ValueError(f"{body} is divisible by 7")


def record_trace(messages: Iterator[Any]) -> None:
    """Writes the current span's ids to the file the message names (in any process)."""
    from opentelemetry import trace

    for message in messages:
        target = json.loads(message.body)["out"]
        context = trace.get_current_span().get_span_context()
        with open(target, "w") as out:
            out.write(f"{context.trace_id:032x} {context.span_id:016x} {os.getpid()}")
