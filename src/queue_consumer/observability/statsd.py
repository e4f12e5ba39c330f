"""statsd metrics over a plain UDP socket: no dependency, never blocks the consumer.

The seed's counters (requested, received, started, failed and successful messages;
revived workers; stuck handlers) plus the handler time per chunk, one datagram per event
(a chunk's counters and timing travel together), optionally tagged the DogStatsD way
(``|#queue:orders``) or the InfluxDB way (``name,queue=orders``), under a prefix::

    statsd = StatsdHooks(queue, "127.0.0.1:8125", tags="dogstatsd")
    consumer = Consumer(queue, handler, hooks=[statsd])

Names: ``<prefix>.messages.requested`` (get calls), ``.received``, ``.started``,
``.succeeded``, ``.failed``, ``.released``, ``<prefix>.workers.revived``,
``<prefix>.handlers.stuck``, ``<prefix>.errors`` (tag ``stage``), the timer
``<prefix>.chunk.duration`` (ms) and the gauge ``<prefix>.messages.in_flight`` (each
supervise tick). ``seed_names=True`` sends the seed's own names instead
(``received.messages``, ``successful.messages``, ``revived.workers``...).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from .._checks import choice, count, flag
from .._hooks import ConsumerHooks
from ..errors import ConfigurationError
from ._common import messaging_system, queue_name

__all__ = ["StatsdHooks", "parse_address"]

log = logging.getLogger("queue_consumer.observability.statsd")

_OURS = {
    "requested": "messages.requested",
    "received": "messages.received",
    "started": "messages.started",
    "succeeded": "messages.succeeded",
    "failed": "messages.failed",
    "released": "messages.released",
    "revived": "workers.revived",
    "stuck": "handlers.stuck",
    "errors": "errors",
    "duration": "chunk.duration",
    "in_flight": "messages.in_flight",
}
_SEED = {
    **_OURS,
    "requested": "requested.messages",
    "received": "received.messages",
    "started": "started.messages",
    "succeeded": "successful.messages",
    "failed": "failed.messages",
    "released": "released.messages",
    "revived": "revived.workers",
    "stuck": "stuck.handlers",
}


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8125`` for IPv6) -> (host, port).

    >>> parse_address("[::1]:8125")
    ('::1', 8125)
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ConfigurationError(f"statsd address must be HOST:PORT, not {address!r}")
    return host.strip("[]"), count("statsd port", port, minimum=1, maximum=65535)


class StatsdHooks(ConsumerHooks):
    """Send a consumer's counters and timings to statsd (``host:port``, UDP).

    ``queue`` (the queue, or its name) adds the tags ``queue`` and ``system``; ``tags``
    (``"dogstatsd"``, ``"influx"`` or ``"none"``) picks their form, ``extra_tags`` adds
    static ones. ``prefix`` ("" for none) goes before every name.
    """

    def __init__(
        self,
        queue: Any = None,
        address: str = "127.0.0.1:8125",
        *,
        prefix: str = "queue_consumer",
        tags: str = "dogstatsd",
        extra_tags: Mapping[str, str] | None = None,
        seed_names: bool = False,
    ) -> None:
        self.host, self.port = parse_address(address)
        self.tag_format = choice("tags", tags, ("dogstatsd", "influx", "none"))
        self.prefix = f"{prefix}." if prefix else ""
        names = _SEED if flag("seed_names", seed_names) else _OURS
        self._names = {key: self.prefix + name for key, name in names.items()}
        tag_values: dict[str, str] = {}
        if queue is not None:
            tag_values["queue"] = queue_name(queue)
            if not isinstance(queue, str):
                tag_values["system"] = messaging_system(queue)
        tag_values.update(extra_tags or {})
        self._tags = tag_values
        self._suffix = self._tag_suffix(tag_values) if self.tag_format == "dogstatsd" else ""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._target = (self.host, self.port)
        self.dropped = 0  #: datagrams the socket refused (statsd down, buffer full)

    def close(self) -> None:
        self._socket.close()

    # -- hooks --------------------------------------------------------------------------

    def on_get(self, count: int, duration: float, error: BaseException | None) -> None:
        self._send([self._line("requested", 1, "c")])

    def on_received(self, messages: Sequence[Any]) -> None:
        self._send([self._line("received", len(messages), "c")])

    def on_chunk_started(self, chunk: Sequence[Any]) -> None:
        self._send([self._line("started", len(chunk), "c")])

    def on_chunk_finished(
        self, succeeded: Sequence[Any], failed: Sequence[Any], error: str | None, duration: float
    ) -> None:
        lines = [self._line("duration", round(duration * 1000, 3), "ms")]
        if succeeded:
            lines.append(self._line("succeeded", len(succeeded), "c"))
        if failed:
            lines.append(self._line("failed", len(failed), "c"))
        self._send(lines)

    def on_released(self, messages: Sequence[Any]) -> None:
        self._send([self._line("released", len(messages), "c")])

    def on_error(self, stage: str, error: BaseException) -> None:
        self._send([self._line("errors", 1, "c", {"stage": stage})])

    def on_handler_stuck(self, chunk: Sequence[Any], running_for: float) -> None:
        self._send([self._line("stuck", 1, "c")])

    def on_worker_revived(self, name: str) -> None:
        self._send([self._line("revived", 1, "c")])

    def on_supervise(self, statistics: Any) -> None:
        self._send([self._line("in_flight", statistics.in_flight, "g")])

    # -- the wire -----------------------------------------------------------------------

    def _line(
        self, key: str, value: float, kind: str, tags: Mapping[str, str] | None = None
    ) -> str:
        name = self._names[key]
        if self.tag_format == "dogstatsd":
            suffix = self._suffix if not tags else self._tag_suffix({**self._tags, **tags})
            return f"{name}:{value}|{kind}{suffix}"
        if self.tag_format == "influx":
            every = {**self._tags, **(tags or {})}
            name += "".join(f",{k}={v}" for k, v in every.items())
        return f"{name}:{value}|{kind}"

    @staticmethod
    def _tag_suffix(tags: Mapping[str, str]) -> str:
        return "|#" + ",".join(f"{k}:{v}" for k, v in tags.items()) if tags else ""

    def _send(self, lines: list[str]) -> None:
        try:
            self._socket.sendto("\n".join(lines).encode(), self._target)
        except OSError:  # nobody listens, or the buffer is full: metrics never block work
            self.dropped += 1
