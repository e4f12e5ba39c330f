"""Checks of SQLiteQueue's arguments, given in Python or in a ``sqlite://`` URL."""

from __future__ import annotations

import math
import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

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


def check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be a finite number {bound}, not {value!r}")
    return seconds


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
    return value


def check_synchronous(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in _SYNCHRONOUS:
        raise ConfigurationError(
            f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {value!r}"
        )
    return value.upper()


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
    kwargs: dict[str, Any] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name in kwargs:
            raise ConfigurationError(f"parameter {name!r} given twice in {url!r}")
        convert = _URL_PARAMETERS.get(name)
        if convert is None:
            raise ConfigurationError(
                f"unknown parameter {name!r} in {url!r} "
                f"(known: {', '.join(sorted(_URL_PARAMETERS))})"
            )
        try:
            kwargs[name] = convert(raw)
        except ValueError:
            raise ConfigurationError(f"bad value {raw!r} for {name!r} in {url!r}") from None
    return path, kwargs


def _flag(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.lower() not in value:
        raise ValueError(text)
    return value[text.lower()]


_URL_PARAMETERS: dict[str, Any] = {
    "queue": str,
    "visibility_timeout": float,
    "max_messages": int,
    "max_attempts": int,
    "retry_delay": float,
    "max_retry_delay": float,
    "wait_time": float,
    "busy_timeout": float,
    "synchronous": str,
    "heartbeat": _flag,
}
