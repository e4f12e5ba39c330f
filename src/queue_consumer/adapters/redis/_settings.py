"""Argument and URL checks of the Redis Streams queue, and the redis-py connection pool."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ... import _checks as checks
from ...errors import ConfigurationError
from .._options import OptionTable, parse_query, redact

__all__ = [
    "OPTIONS",
    "SCHEMES",
    "check_name",
    "connection_url",
    "parse_url",
    "pool_size",
    "secret",
]

#: redis:// and rediss:// (TLS) as redis-py reads them; redis+unix:///path/to.sock.
SCHEMES = ("redis", "rediss", "redis+unix")

_CPUS = os.cpu_count() or 1


def check_name(name: str, value: object, *, stream: bool = False) -> str:
    """A non-empty name; a stream name may not hold braces (its keys add a hash tag)."""
    if not isinstance(value, str) or not value or (stream and ("{" in value or "}" in value)):
        what = "a non-empty name without { or }" if stream else "a non-empty name"
        raise ConfigurationError(f"{name} must be {what}, not {value!r}")
    return value


def _stream(name: str, value: object) -> str:
    return check_name(name, value, stream=True)


def _text(name: str, value: object) -> str:
    return check_name(name, value)


def _optional_seconds(name: str, value: object) -> float | None:
    return checks.optional(checks.seconds, name, value, positive=True)


def _optional_count(name: str, value: object) -> int | None:
    return checks.optional(checks.count, name, value)


def _db(name: str, value: object) -> int:
    return checks.count(name, value, minimum=0)


def _cert_reqs(name: str, value: object) -> str:
    return checks.choice(name, value, ("none", "optional", "required"))


#: query option -> (RedisStreamQueue keyword, check)
OPTIONS: OptionTable = {
    "stream": ("stream", _stream),
    "group": ("group", _text),
    "consumer": ("consumer", _text),
    "block": ("block", checks.seconds),
    "max_messages": ("max_messages", checks.count),
    "claim_idle": ("claim_idle", lambda n, v: checks.seconds(n, v, positive=True)),
    "max_attempts": ("max_attempts", checks.count),
    "retry_delay": ("retry_delay", checks.seconds),
    "max_retry_delay": ("max_retry_delay", checks.seconds),
    "reclaim_interval": ("reclaim_interval", checks.seconds),
    "promote_interval": ("promote_interval", checks.seconds),
    "prune_idle": ("prune_idle", _optional_seconds),
    "heartbeat": ("heartbeat", checks.flag),
    "declare": ("declare", checks.flag),
    "max_connections": ("max_connections", _optional_count),
    "socket_timeout": ("socket_timeout", _optional_seconds),
    "connect_timeout": ("connect_timeout", lambda n, v: checks.seconds(n, v, positive=True)),
    # Handed to redis-py as they are.
    "db": ("db", _db),
    "client_name": ("client_name", _text),
    "ssl_cert_reqs": ("ssl_cert_reqs", _cert_reqs),
    "ssl_ca_certs": ("ssl_ca_certs", _text),
    "ssl_certfile": ("ssl_certfile", _text),
    "ssl_keyfile": ("ssl_keyfile", _text),
    "password_file": ("password_file", _text),
    "password_env": ("password_env", _text),
}

#: The options above that are connection settings, passed to redis-py.
CLIENT_OPTIONS = ("client_name", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """``(connection URL without the query, RedisStreamQueue keyword arguments)``."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a Redis URL must be a string, not {url!r}")
    kwargs = parse_query(url, OPTIONS)
    if "stream" not in kwargs:
        raise ConfigurationError(f"a Redis queue URL needs ?stream=NAME: {redact(url)!r}")
    client = {name: kwargs.pop(name) for name in CLIENT_OPTIONS if name in kwargs}
    if "db" in kwargs:
        client["db"] = kwargs.pop("db")
    if client:
        kwargs["client_options"] = client
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment="")), kwargs


def connection_url(url: str) -> tuple[str, dict[str, Any]]:
    """The URL redis-py reads (``redis+unix`` becomes its ``unix``) and the keyword
    arguments it implies; checks the scheme, the host and the database number."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a Redis URL must be a string, not {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"malformed Redis URL {redact(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"a Redis URL starts with {', '.join(s + '://' for s in SCHEMES)}: {redact(url)!r}"
        )
    if parts.query:
        raise ConfigurationError(
            f"RedisStreamQueue(url=...) takes no query (use from_url for ?stream=...): "
            f"{redact(url)!r}"
        )
    extra: dict[str, Any] = {}
    if scheme == "redis+unix":
        if not parts.path or parts.path == "/":
            raise ConfigurationError(
                f"redis+unix:// needs the socket's path (redis+unix:///run/redis.sock): "
                f"{redact(url)!r}"
            )
        return f"unix://{parts.netloc}{parts.path}", extra
    if not parts.hostname:
        raise ConfigurationError(f"a Redis URL needs a host: {redact(url)!r}")
    del port
    db = parts.path.strip("/")
    if db:
        extra["db"] = _db("the database number (URL path)", db)
    return urlunsplit(parts._replace(path="")), extra


def pool_size(max_connections: int | None) -> int:
    """Connections to keep: a blocked XREADGROUP holds one per polling thread, a settle
    one per handler thread; the default fits the Consumer's defaults (one polling thread
    and one handler per CPU) plus the lease keeper and stats."""
    return max_connections if max_connections is not None else 2 * _CPUS + 2


def secret(password_file: str | None, password_env: str | None) -> str | None:
    """The password kept out of the URL: read from a file (a mounted secret; one trailing
    newline dropped) or an environment variable. Never shown in an error."""
    if password_file is not None and password_env is not None:
        raise ConfigurationError("give password_file or password_env, not both")
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise ConfigurationError(
                f"password_file {password_file!r} cannot be read: {exc.strerror}"
            ) from None
        return text[:-1] if text.endswith("\n") else text
    if password_env is not None:
        value = os.environ.get(password_env)
        if value is None:
            raise ConfigurationError(f"password_env: ${password_env} is not set")
        return value
    return None
