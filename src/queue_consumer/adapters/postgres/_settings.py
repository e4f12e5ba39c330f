"""Checks of PostgresQueue's arguments, given in Python or in a ``postgresql://`` URL."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ... import _checks as checks
from ...errors import ConfigurationError
from .._options import OptionTable, parse_query, redact

__all__ = ["OPTIONS", "SCHEMES", "check_name", "mask", "split_url"]

_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask(conninfo: str) -> str:
    """``conninfo`` (a URL or ``key=value`` string) with its password shown as ``***``."""
    if "://" in conninfo:
        conninfo = redact(conninfo)
    return _PASSWORD.sub(r"\1***", conninfo)


SCHEMES = ("postgresql", "postgres")

# PostgreSQL truncates identifiers at 63 bytes; a longer schema name would silently be
# another one.
_MAX_IDENTIFIER = 63


def check_name(name: str, value: object) -> str:
    """A queue or schema name: non-empty text (a schema at most 63 bytes)."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ConfigurationError(f"{name} must be a non-empty name, not {value!r}")
    if name == "schema" and len(value.encode()) > _MAX_IDENTIFIER:
        raise ConfigurationError(f"schema must be at most 63 bytes long, not {value!r}")
    return value


def _max_messages(name: str, value: object) -> int:
    return checks.count(name, value, maximum=1000)


def _wait(name: str, value: object) -> float:
    return checks.seconds(name, value, maximum=20)


def _positive(name: str, value: object) -> float:
    return checks.seconds(name, value, positive=True)


#: URL query option -> (PostgresQueue keyword, check). The rest of the query is libpq's.
OPTIONS: OptionTable = {
    "queue": ("queue", check_name),
    "schema": ("schema", check_name),
    "visibility_timeout": ("visibility_timeout", _positive),
    "max_messages": ("max_messages", _max_messages),
    "max_attempts": ("max_attempts", checks.count),
    "retry_delay": ("retry_delay", checks.seconds),
    "max_retry_delay": ("max_retry_delay", checks.seconds),
    "wait_time": ("wait_time", _wait),
    "poll_interval": ("poll_interval", _positive),
    "listen": ("listen", checks.flag),
    "declare": ("declare", checks.flag),
    "heartbeat": ("heartbeat", checks.flag),
    "pool_size": ("pool_size", checks.count),
    "pool_timeout": ("pool_timeout", _positive),
    "prepare": ("prepare", checks.flag),
}


def _libpq_keywords() -> set[str]:
    from psycopg import pq  # the package needs psycopg anyway; settings checks stay light

    return {option.keyword.decode() for option in pq.Conninfo.get_defaults()}


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """(libpq conninfo, PostgresQueue keyword arguments) of a ``postgresql://`` URL.

    Our options leave the query; what remains (``sslmode``, ``application_name``,
    ``connect_timeout``...) goes to libpq untouched, and so do user, password, host, port
    and database.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a PostgreSQL URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(
            f"not a PostgreSQL URL (expected postgresql://USER@HOST:PORT/DB?queue=NAME): "
            f"{mask(url)!r}"
        )
    try:
        kwargs = parse_query(url, OPTIONS, passthrough=True)
    except ConfigurationError as exc:  # a password given as ?password=... is masked too
        raise ConfigurationError(mask(str(exc))) from None
    rest: list[tuple[str, str]] = kwargs.pop("__rest__")
    libpq = _libpq_keywords()
    for key, _ in rest:
        if key not in libpq:
            known = ", ".join(sorted(OPTIONS))
            raise ConfigurationError(
                f"unknown option {key!r} in {mask(url)!r}: neither a queue option ({known}) "
                "nor a libpq connection parameter"
            )
    conninfo = urlunsplit(parts._replace(query=urlencode(rest)))
    return conninfo, kwargs
