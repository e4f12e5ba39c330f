"""Log formatters for the command line: plain text for people, JSON lines for collectors.

Nothing here touches the logging configuration; ``cli.py`` alone installs a handler.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

__all__ = ["TEXT_FORMAT", "JSONFormatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: Record attributes written out when set (observability.logs.LogContext sets them).
CONTEXT_FIELDS = ("queue", "message_ids", "trace_id", "span_id")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` and ``exc``.

    ``exc`` (the formatted traceback) is present only when the record carries one.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a log call must never fail because of an odd argument.
        return json.dumps(entry, default=str, ensure_ascii=False)
