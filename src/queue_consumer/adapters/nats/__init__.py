"""Consume a NATS JetStream stream: ``JetStreamQueue`` and ``from_url`` (the ``[nats]`` extra).

::

    from queue_consumer import Consumer
    from queue_consumer.adapters.nats import JetStreamQueue

    def handler(messages):
        for message in messages:          # JetStreamMessage: body, subject, delivery_count...
            process(message.body)

    with JetStreamQueue("ORDERS", "orders.new", servers="nats://127.0.0.1:4222") as queue:
        with Consumer(queue, handler, max_workers=2, max_handlers=8) as consumer:
            consumer.supervise(blocking=True)      # until SIGTERM / Ctrl-C

A durable pull consumer with explicit acks: ``cleanup`` acknowledges (confirmed by the
server), ``reject`` naks with a backoff delay and dead-letters after ``max_attempts``,
``release`` naks at once, and a heartbeat sends "in progress" for held messages. nats-py
runs on an event loop in a daemon thread of the queue.
"""

from __future__ import annotations

try:
    import nats as _nats  # the nats-py client (absolute import: not this package)
except ModuleNotFoundError as exc:  # pragma: no cover - the [nats] extra is installed in dev
    raise ModuleNotFoundError(
        "the NATS adapter needs nats-py: pip install queue-consumer[nats]", name=exc.name
    ) from exc

from ._messages import DeadLetter, JetStreamMessage, JetStreamStatistics
from ._queue import JetStreamError, JetStreamQueue
from ._settings import parse_url

del _nats

__all__ = [
    "DeadLetter",
    "JetStreamError",
    "JetStreamMessage",
    "JetStreamQueue",
    "JetStreamStatistics",
    "from_url",
]


def from_url(url: str) -> JetStreamQueue:
    """Open ``nats://HOST:PORT?stream=NAME&subject=SUBJECT&consumer=NAME&ack_wait=30...``.

    ``nats+tls://`` for TLS. Every ``JetStreamQueue`` keyword is a query option (``wait``
    for ``wait_time``, ``visibility_timeout`` for ``ack_wait``); credentials come from
    ``creds=``, ``nkey_seed=``, ``token_file=`` (paths), ``user:password@`` or ``token@``
    before the host, or the environment (``NATS_CREDS``, ``NATS_NKEY_SEED``, ``NATS_TOKEN``).
    """
    settings = parse_url(url)
    return JetStreamQueue(**settings.kwargs())
