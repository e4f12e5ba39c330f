"""Every exception queue_consumer raises.

QueueConsumerError
├── ConfigurationError (also ValueError)   bad arguments, found at construction
├── ConsumerStateError (also RuntimeError) e.g. start() after shutdown()
├── StuckHandlersError                     too many handlers ran past handler_timeout
└── HandlerProcessError                    a handler process died or could not be reached

PartialFailure                             raised *by handlers* to fail exact messages
PermanentFailure                           raised *by handlers*: this message can never succeed

Adapters define their own errors beside their client library, all under
QueueConsumerError: adapters.sqlite.SQLiteQueueError (the file stayed locked, or is
unusable) and adapters.sqs.SQSBatchError (entries of a batch call still failed after
retries).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class QueueConsumerError(Exception):
    """Base of every error queue_consumer raises itself."""


class ConfigurationError(QueueConsumerError, ValueError):
    """The consumer (or a queue) was given arguments it cannot work with."""


class ConsumerStateError(QueueConsumerError, RuntimeError):
    """A lifecycle method was called in a state that does not allow it."""


class StuckHandlersError(QueueConsumerError):
    """More handlers than allowed ran longer than ``handler_timeout``.

    Raised by ``supervise()`` so that the process exits and its orchestrator restarts it:
    a thread cannot be killed, a process can.
    """


class HandlerProcessError(QueueConsumerError):
    """A handler process died (killed, out of memory) or its chunk could not be sent."""


class PartialFailure(Exception):
    """Raised by a handler to say exactly which messages of its chunk failed.

    Everything else in the chunk succeeded, whatever the iterator position. This is the
    way for bulk handlers that must read the whole chunk at once::

        def handler(messages):
            batch = list(messages)
            try:
                bulk_insert(batch)
            except DatabaseError as exc:
                raise PartialFailure(batch) from exc     # all of them failed

    Messages are matched by identity within the chunk (so it works in child processes
    too, where the handler sees copies).
    """

    def __init__(self, failed: Iterable[Any], message: str = "") -> None:
        self.failed = list(failed)
        super().__init__(message or f"{len(self.failed)} message(s) failed")


class PermanentFailure(Exception):
    """Raised by a handler: the message in hand can never succeed; dead-letter it at once.

    Like any other error, the messages taken before it succeeded and those after it are
    released; the one in hand goes straight to the queue's dead letters (``dead_letter``)
    instead of spending its remaining attempts. A queue without dead letters rejects it::

        def handler(messages):
            for message in messages:
                order = parse(message.body)
                if order is None:
                    raise PermanentFailure(f"not an order: {message.body!r}")
                ship(order)
    """
