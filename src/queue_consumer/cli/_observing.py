"""`run`'s observability options turned into hooks, a metrics/probe server and log context.

Nothing of ``queue_consumer.observability`` is imported unless an option asks for it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._hooks import ConsumerHooks

log = logging.getLogger("queue_consumer.cli")


class Observability:
    """The hooks to give the consumer, and what to start once it exists."""

    def __init__(self, args: argparse.Namespace, queue: Any) -> None:
        self.args = args
        self.hooks: list[ConsumerHooks] = []
        self.metrics: Any = None
        self.health: Any = None
        self.server: Any = None
        self._filters: list[tuple[logging.Handler, logging.Filter]] = []
        self._closing: list[Any] = []
        if args.metrics_port is not None or args.health_file:
            from ..observability.health import HealthHooks

            self.health = HealthHooks(
                stall_after=args.stall_after or None,
                stall_is_fatal=args.stall_is_fatal,
                health_file=args.health_file,
            )
            self.hooks.append(self.health)
        if args.metrics_port is not None:
            try:
                from ..observability.prometheus import PrometheusHooks
            except ModuleNotFoundError as exc:
                log.warning("%s; serving /livez and /readyz only", exc)
                self.metrics = False
            else:
                self.metrics = PrometheusHooks()
                self.hooks.append(self.metrics)
        if args.statsd:
            from ..observability.statsd import StatsdHooks

            statsd = StatsdHooks(
                queue, args.statsd, prefix=args.statsd_prefix, tags=args.statsd_tags
            )
            self.hooks.append(statsd)
            self._closing.append(statsd)
        if args.otel:
            from ..observability.otel import OTelHooks

            self.hooks.append(OTelHooks(queue))
        if args.log_format == "json":
            from ..observability.logs import LogContext

            context = LogContext(queue)
            self.hooks.append(context)
            for handler in logging.getLogger().handlers:
                handler.addFilter(context)
                self._filters.append((handler, context))

    def start(self, consumer: Any) -> None:
        """Bind the health judge and serve the port, before the consumer starts."""
        if self.health is not None:
            self.health.bind(consumer)
        if self.args.metrics_port is not None:
            from ..observability.server import serve

            self.server = serve(
                consumer,
                self.args.metrics_port,
                self.args.metrics_host,
                metrics=self.metrics,
                health=self.health,
            )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for closing in self._closing:
            closing.close()
        for handler, context in self._filters:
            handler.removeFilter(context)


@contextmanager
def observing(args: argparse.Namespace, queue: Any) -> Iterator[Observability]:
    observability = Observability(args, queue)
    try:
        yield observability
    finally:
        observability.close()
