"""Checks of RabbitMQQueue's arguments, given in Python or in an ``amqp://`` URL (no pika)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ... import _checks as checks
from ...errors import ConfigurationError
from .._options import parse_query, redact

__all__ = ["QUERY_OPTIONS", "Settings", "hold_delays", "parse_url"]

QUEUE_TYPES = ("classic", "quorum")
RETRY_MODES = ("delay", "requeue")
DECLARE_MODES = ("true", "passive", "false")
SCHEMES = ("amqp", "amqps")
#: RabbitMQ's default consumer_timeout (30 minutes), which AMQP gives no way to read.
DEFAULT_CONSUMER_TIMEOUT = 1800.0
_NAME = re.compile(r"^[\w.:-]{1,200}$")


def _name(option: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value.startswith("amq."):
        raise ConfigurationError(
            f"{option} must be a queue name (letters, digits, '_.:-', not 'amq.*'), not {value!r}"
        )
    return value


def _declare(option: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() == "passive":
        return "passive"
    try:
        return "true" if checks.flag(option, value) else "false"
    except ConfigurationError:
        raise ConfigurationError(
            f"{option} must be true, false or 'passive', not {value!r}"
        ) from None


def _text(option: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ConfigurationError(f"{option} must be a non-empty name, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting of a queue, checked. ``url`` is pika's (our options removed)."""

    url: str
    queue: str
    queue_type: str
    prefetch: int
    max_messages: int
    wait_time: float
    max_attempts: int
    retry: str
    retry_delay: float
    max_retry_delay: float
    declare: str
    consumer_timeout: float
    handler_timeout: float | None
    dead_letter_queue: str
    connection_name: str | None
    close_timeout: float
    operation_timeout: float
    reconnect_delay: float
    max_reconnect_delay: float

    @classmethod
    def check(cls, url: object, queue: object, **options: Any) -> Settings:
        if not isinstance(url, str) or urlsplit(url).scheme.lower() not in SCHEMES:
            shown = redact(url) if isinstance(url, str) else repr(url)
            raise ConfigurationError(f"url must be an amqp:// or amqps:// URL, not {shown!r}")
        name = _name("queue", queue)
        max_messages = checks.count("max_messages", options.get("max_messages", 10))
        prefetch = checks.optional(checks.count, "prefetch", options.get("prefetch"), maximum=65535)
        retry_delay = checks.seconds("retry_delay", options.get("retry_delay", 1.0))
        max_retry_delay = checks.seconds("max_retry_delay", options.get("max_retry_delay", 300.0))
        if max_retry_delay < retry_delay:
            raise ConfigurationError(
                f"max_retry_delay ({max_retry_delay:g}) must be >= retry_delay ({retry_delay:g})"
            )
        queue_type = checks.choice("queue_type", options.get("queue_type", "classic"), QUEUE_TYPES)
        retry = checks.choice("retry", options.get("retry", "delay"), RETRY_MODES)
        if retry == "requeue" and queue_type != "quorum":
            raise ConfigurationError(
                "retry='requeue' needs queue_type='quorum': a classic queue does not count "
                "requeues, so a message that always fails would be redelivered for ever"
            )
        consumer_timeout = checks.seconds(
            "consumer_timeout",
            options.get("consumer_timeout", DEFAULT_CONSUMER_TIMEOUT),
            positive=True,
        )
        handler_timeout = checks.optional(
            checks.seconds, "handler_timeout", options.get("handler_timeout"), positive=True
        )
        check_handler_timeout(handler_timeout, consumer_timeout)
        reconnect_delay = checks.seconds(
            "reconnect_delay", options.get("reconnect_delay", 0.1), positive=True
        )
        max_reconnect_delay = checks.seconds(
            "max_reconnect_delay", options.get("max_reconnect_delay", 30.0), positive=True
        )
        connection_name = options.get("connection_name")
        return cls(
            url=url,
            queue=name,
            queue_type=queue_type,
            prefetch=max_messages if prefetch is None else prefetch,
            max_messages=max_messages,
            wait_time=checks.seconds("wait_time", options.get("wait_time", 1.0), maximum=20),
            max_attempts=checks.count("max_attempts", options.get("max_attempts", 5)),
            retry=retry,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            declare=_declare("declare", options.get("declare", True)),
            consumer_timeout=consumer_timeout,
            handler_timeout=handler_timeout,
            dead_letter_queue=_name(
                "dead_letter_queue", options.get("dead_letter_queue") or f"{name}.dead"
            ),
            connection_name=None
            if connection_name is None
            else _text("connection_name", connection_name),
            close_timeout=checks.seconds("close_timeout", options.get("close_timeout", 30.0)),
            operation_timeout=checks.seconds(
                "operation_timeout", options.get("operation_timeout", 30.0), positive=True
            ),
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max(max_reconnect_delay, reconnect_delay),
        )

    def __repr__(self) -> str:  # the URL's password masked, as everywhere
        shown = {**self.keywords(), "url": redact(self.url)}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def keywords(self) -> dict[str, Any]:
        """The keyword arguments that open this queue again (pickling, process mode)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def backoff(self, attempts: int) -> float:
        """Seconds a message rejected after ``attempts`` deliveries waits."""
        exponent = min(max(attempts - 1, 0), 64)
        return float(min(self.retry_delay * 2**exponent, self.max_retry_delay))


def check_handler_timeout(handler_timeout: float | None, consumer_timeout: float) -> None:
    """A handler may not hold a delivery as long as the broker's ``consumer_timeout``:
    past it RabbitMQ closes the channel and every delivery on it comes back (twice
    handled). AMQP 0.9.1 has no way to extend a delivery, nor to read the timeout."""
    if handler_timeout is not None and handler_timeout >= consumer_timeout:
        raise ConfigurationError(
            f"handler_timeout ({handler_timeout:g} s) must be shorter than the broker's "
            f"consumer_timeout ({consumer_timeout:g} s): RabbitMQ closes the channel of a "
            "delivery unacknowledged that long (raise consumer_timeout in rabbitmq.conf, "
            "and tell this queue with consumer_timeout=...)"
        )


def hold_delays(settings: Settings) -> list[float]:
    """Every delay ``reject`` can ask for: one hold queue each, so they do not multiply."""
    return sorted({settings.backoff(a) for a in range(1, settings.max_attempts)})


def hold_queue(settings: Settings, delay: float) -> str:
    return f"{settings.queue}.retry.{round(delay * 1000)}ms"


_OPTION_NAMES = (
    "queue", "queue_type", "prefetch", "max_messages", "wait_time", "max_attempts", "retry",
    "retry_delay", "max_retry_delay", "declare", "consumer_timeout", "handler_timeout",
    "dead_letter_queue", "connection_name", "close_timeout", "operation_timeout",
    "reconnect_delay", "max_reconnect_delay",
)  # fmt: skip


def _as_text(option: str, text: str) -> str:
    return text  # checked with the rest in Settings.check


#: Our query options (checked by Settings.check); pika's own (heartbeat, ...) pass through.
QUERY_OPTIONS = {name: (name, _as_text) for name in _OPTION_NAMES}


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """``(pika_url, keyword arguments)`` for ``amqp://USER:PASS@HOST:PORT/VHOST?queue=..``."""
    if not isinstance(url, str):
        raise ConfigurationError(f"an amqp URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(f"not an amqp:// or amqps:// URL: {redact(url)!r}")
    kwargs = parse_query(url, QUERY_OPTIONS, passthrough=True)
    rest: list[tuple[str, str]] = kwargs.pop("__rest__")
    if "queue" not in kwargs:
        raise ConfigurationError(f"no queue in {redact(url)!r} (add ?queue=NAME)")
    pika_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return pika_url, kwargs
