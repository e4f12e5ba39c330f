"""What every adapter's ``from_url`` shares: query options checked one way, passwords masked.

An adapter lists its query options as ``{"option": (keyword, check)}``, where ``check`` is
one of ``queue_consumer._checks`` (or any ``check(name, text) -> value``), and calls
:func:`parse_query`. Unknown, repeated or bad options are a ``ConfigurationError`` that
names the option and never shows a password::

    >>> from queue_consumer import _checks as checks
    >>> OPTIONS = {"wait": ("wait_time", checks.seconds), "heartbeat": ("heartbeat", checks.flag)}
    >>> parse_query("redis://:secret@host/0?wait=2&heartbeat=on", OPTIONS)
    {'wait_time': 2.0, 'heartbeat': True}
    >>> redact("redis://:secret@host/0")
    'redis://:***@host/0'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = ["Check", "OptionTable", "parse_query", "redact", "split_query"]

#: check(option_name, text) -> value, raising ConfigurationError (see queue_consumer._checks).
Check = Callable[[str, str], Any]
#: query option -> (keyword argument, check)
OptionTable = Mapping[str, tuple[str, Check]]


def parse_query(url: str, options: OptionTable, *, passthrough: bool = False) -> dict[str, Any]:
    """The keyword arguments the query of ``url`` stands for.

    With ``passthrough=True`` unknown options are not errors; they are returned under the
    key ``"__rest__"`` as a list of ``(name, text)`` pairs, for a client library's own URL
    parameters (libpq, pika) that the adapter hands on.
    """
    kwargs: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, text in split_query(url):
        if key in seen:
            raise ConfigurationError(f"option {key!r} is given twice in {redact(url)!r}")
        seen.add(key)
        if key not in options:
            if passthrough:
                rest.append((key, text))
                continue
            known = ", ".join(sorted(options))
            raise ConfigurationError(f"unknown option {key!r} in {redact(url)!r} (known: {known})")
        keyword, check = options[key]
        kwargs[keyword] = check(key, text)
    if passthrough:
        kwargs["__rest__"] = rest
    return kwargs


def split_query(url: str) -> list[tuple[str, str]]:
    """The ``(name, text)`` pairs of the query, in order; a malformed one is an error."""
    query = urlsplit(url).query
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError(f"malformed query in {redact(url)!r}: {exc}") from None


def redact(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: for logs, errors and ``repr``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
