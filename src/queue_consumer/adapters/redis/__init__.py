"""Consume a Redis stream through a consumer group: ``RedisStreamQueue`` and ``from_url``
(the ``[redis]`` extra, redis-py).

::

    from queue_consumer import Consumer
    from queue_consumer.adapters.redis import RedisStreamQueue

    def handler(messages):
        for message in messages:        # RedisMessage: id, body, delivery_count...
            process(message.body)

    with RedisStreamQueue("redis://localhost:6379/0", "orders") as queue:
        with Consumer(queue, handler, max_workers=2, max_handlers=8) as consumer:
            consumer.supervise(blocking=True)    # until SIGTERM / Ctrl-C

``get()`` reads with ``XREADGROUP`` (and takes back entries of dead consumers with
``XPENDING IDLE`` + ``XCLAIM``), ``cleanup`` acknowledges and deletes (``XACK`` +
``XDEL``), ``reject`` retries after a backoff, ``release`` hands back at once without
spending an attempt, and a heartbeat keeps held entries from being taken back. Every move
of more than one step is one Lua script (``_scripts``); every settle is fenced.
"""

from __future__ import annotations

from ._messages import DeadLetter, RedisMessage
from ._queue import RedisStreamQueue, from_url

__all__ = ["DeadLetter", "RedisMessage", "RedisStreamQueue", "from_url"]
