"""Checks of SQLiteQueue's arguments, given in Python or in a ``sqlite://`` URL."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from queue_consumer import _checks as checks
from queue_consumer.adapters._options import OptionTable, parse_query
from queue_consumer.errors import ConfigurationError

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def check_path(path: str | os.PathLike[str]) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise ConfigurationError(f"path must be a file path, not {path!r}") from None
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"path must be a non-empty file path, not {path!r}")
    if text == ":memory:" or text.startswith("file:"):
        raise ConfigurationError(
            f"SQLiteQueue needs a file shared by its connections, not {text!r} "
            "(for an in-process queue use queue_consumer.MemoryQueue)"
        )
    # Absolute, so a copy pickled into a process with another working directory opens
    # the same file.
    return os.path.abspath(text)


def check_synchronous(value: object) -> str:
    return checks.choice("synchronous", value, _SYNCHRONOUS)


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The path and the keyword arguments a ``sqlite://`` URL stands for."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a sqlite URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a sqlite URL (expected sqlite:///path.db): {url!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"a sqlite URL has no host: use sqlite:///relative.db or sqlite:////absolute.db, "
            f"not {url!r}"
        )
    path = unquote(parts.path[1:])  # the first slash only separates the (empty) host
    if not path:
        raise ConfigurationError(f"no database path in {url!r} (expected sqlite:///path.db)")
    kwargs = parse_query(url, _URL_OPTIONS)
    return path, kwargs


_URL_OPTIONS: OptionTable = {
    "queue": ("queue", lambda name, text: text),
    "visibility_timeout": ("visibility_timeout", checks.seconds),
    "max_messages": ("max_messages", checks.count),
    "max_attempts": ("max_attempts", checks.count),
    "retry_delay": ("retry_delay", checks.seconds),
    "max_retry_delay": ("max_retry_delay", checks.seconds),
    "wait_time": ("wait_time", checks.seconds),
    "busy_timeout": ("busy_timeout", checks.seconds),
    "synchronous": ("synchronous", lambda name, text: check_synchronous(text)),
    "heartbeat": ("heartbeat", checks.flag),
    "create": ("create", checks.flag),
}
