"""Consume a RabbitMQ queue: ``RabbitMQQueue`` and ``from_url`` (the ``[rabbitmq]`` extra, pika).

::

    from queue_consumer import Consumer
    from queue_consumer.adapters.rabbitmq import RabbitMQQueue

    def handler(messages):
        for message in messages:          # RabbitMQMessage: body, headers, delivery_count...
            process(message.body)

    url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    with RabbitMQQueue(url, "orders", prefetch=8 * 10) as queue:
        with Consumer(queue, handler, max_handlers=8, messages_bulk_size=10) as consumer:
            consumer.supervise(blocking=True)      # until SIGTERM / Ctrl-C

One I/O thread owns the pika connection (``_io``); the queue's rules (attempts, hold
queues, dead letters, shutdown order) are in ``_queue``; messages in ``_messages``;
argument and URL checks in ``_settings``.
"""

from __future__ import annotations

try:
    import pika  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - the [rabbitmq] extra is in dev
    raise ModuleNotFoundError(
        "the RabbitMQ adapter needs pika: pip install queue-consumer[rabbitmq]", name=exc.name
    ) from exc

from ._io import RabbitMQError
from ._messages import DeadLetter, RabbitMQMessage
from ._queue import RabbitMQQueue, from_url

__all__ = ["DeadLetter", "RabbitMQError", "RabbitMQMessage", "RabbitMQQueue", "from_url"]
