"""Turn a queue URL (``sqlite:///jobs.db?queue=emails``) into a queue object.

A scheme maps to a factory ``factory(url) -> queue``. Built-in factories are named as
``"module:function"`` strings and imported only when their scheme is used, so opening a
``sqlite://`` queue never imports boto3. Third parties add schemes with
:func:`register_scheme` or through the ``queue_consumer.queues`` entry-point group::

    [project.entry-points."queue_consumer.queues"]
    redis = "my_package.queue:from_url"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["known_schemes", "open_queue", "register_scheme"]

#: A factory takes the whole URL and returns a queue.
QueueFactory = Callable[[str], Any]

ENTRY_POINT_GROUP = "queue_consumer.queues"

_BUILTIN: dict[str, str] = {
    "amqp": "queue_consumer.adapters.rabbitmq:from_url",
    "amqps": "queue_consumer.adapters.rabbitmq:from_url",
    "memory": "queue_consumer.adapters.memory:from_url",
    "postgres": "queue_consumer.adapters.postgres:from_url",
    "postgresql": "queue_consumer.adapters.postgres:from_url",
    "sqlite": "queue_consumer.adapters.sqlite:from_url",
    "nats": "queue_consumer.adapters.nats:from_url",
    "nats+tls": "queue_consumer.adapters.nats:from_url",
    "sqs": "queue_consumer.adapters.sqs:from_url",
    # An SQS queue URL is a plain https URL (an emulator's, http): the SQS adapter claims it,
    # or refuses it with a clear error. The registry itself knows no broker.
    "http": "queue_consumer.adapters.sqs:from_url",
    "https": "queue_consumer.adapters.sqs:from_url",
    "redis": "queue_consumer.adapters.redis:from_url",
    "rediss": "queue_consumer.adapters.redis:from_url",
    "redis+unix": "queue_consumer.adapters.redis:from_url",
}

_registered: dict[str, QueueFactory | str] = {}


def register_scheme(scheme: str, factory: QueueFactory | str) -> None:
    """Make ``open_queue()`` send URLs of ``scheme`` to ``factory``.

    ``factory`` is a callable taking the URL, or a ``"module:function"`` string imported on
    first use. A registered scheme wins over an entry point and a built-in of the same name::

        register_scheme("redis", "my_package.queue:from_url")
    """
    scheme = scheme.lower()
    if not scheme or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        raise ConfigurationError(f"invalid URL scheme {scheme!r}")
    _registered[scheme] = factory


def known_schemes() -> list[str]:
    """Every scheme ``open_queue()`` understands, sorted."""
    return sorted(set(_BUILTIN) | set(_entry_point_schemes()) | set(_registered))


def open_queue(url: str) -> Any:
    """Build the queue a URL names.

    >>> queue = open_queue("memory://demo")
    >>> queue is open_queue("memory://demo")    # one memory queue per name and process
    True

    Raises ``ConfigurationError`` for an unknown scheme, a factory that cannot be imported,
    or an adapter whose optional dependency is missing (with the extra to install).
    """
    scheme = _scheme_of(url)
    factory = _resolve(scheme)
    try:
        return factory(url)
    except ModuleNotFoundError as exc:
        # Some adapters import their client library lazily, in from_url itself.
        raise _missing_dependency(scheme, getattr(factory, "__module__", ""), exc) from exc


def _scheme_of(url: str) -> str:
    if "://" not in url:
        raise ConfigurationError(
            f"not a queue URL: {url!r} (expected SCHEME://..., known schemes: "
            f"{', '.join(known_schemes())})"
        )
    return urlsplit(url).scheme.lower()


def _resolve(scheme: str) -> QueueFactory:
    target: QueueFactory | str | None = _registered.get(scheme)
    if target is None:
        target = _entry_point_schemes().get(scheme)
    if target is None:
        target = _BUILTIN.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"unknown queue URL scheme {scheme!r} (known schemes: {', '.join(known_schemes())})"
        )
    if callable(target):
        return target
    return _import_factory(scheme, target)


def _import_factory(scheme: str, spec: str) -> QueueFactory:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise _missing_dependency(scheme, module_name, exc) from exc
    factory = getattr(module, attr or "from_url", None)
    if not callable(factory):
        raise ConfigurationError(f"queue factory {spec!r} for {scheme}:// is not a callable")
    return factory  # type: ignore[no-any-return]


def _missing_dependency(scheme: str, module_name: str, exc: ModuleNotFoundError) -> Exception:
    # A built-in adapter's extra is named after its package: queue_consumer.adapters.sqs -> [sqs].
    extra = None
    if module_name.startswith("queue_consumer.adapters."):
        extra = module_name.split(".")[2]
    missing = exc.name or str(exc)
    if extra is not None and missing != module_name:
        return ConfigurationError(
            f"{scheme}:// queues need the {missing!r} package: install queue-consumer[{extra}]"
        )
    return ConfigurationError(f"cannot load the {scheme}:// queue adapter: {exc}")


def _entry_point_schemes() -> dict[str, str]:
    # Read on every call (it is cheap next to opening a queue) so a freshly installed
    # plugin is seen without restarting an interactive session.
    return {ep.name.lower(): ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
