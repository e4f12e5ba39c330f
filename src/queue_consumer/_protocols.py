"""The queue contract: what queue_consumer needs from a queue, and nothing more.

Only ``get()`` is required. Every other hook is optional and looked up once, when the
consumer is built, so a plain object with ``get()`` is a queue.

- ``get() -> Iterable[M]``: return the next messages (may be empty).
- ``cleanup(messages)``: remove messages whose handler succeeded.
- ``reject(messages)``: messages whose handler failed (e.g. make them visible again,
  maybe after a backoff). Without it, failed messages are left to the queue's own
  redelivery (a visibility timeout, say). A ``reject`` that takes an ``error`` keyword
  gets the handler's traceback as text (to keep with a dead letter, say).
- ``release(messages)``: messages fetched but never handled (shutdown, or the tail of a
  message group held back by a failure). They failed through no fault of their own, so a
  queue may return them at once. Without it, ``reject`` is used.
- ``handler(messages)``: the handler, if none is given to the consumer.
- ``message_group(message) -> Hashable | None``: messages of one group (not ``None``)
  are handled one chunk after another, in order, and a failure holds back the rest of the
  group (they are released). FIFO queues use it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)

#: A handler takes an iterator of messages. What it took before raising succeeded.
Handler = Callable[[Iterator[Any]], object]


@runtime_checkable
class Queue(Protocol[M_co]):
    """Anything with ``get()``. See the module docstring for the optional hooks."""

    def get(self) -> Iterable[M_co]: ...


class CleanupQueue(Protocol):
    def cleanup(self, messages: list[Any]) -> object: ...


class RejectQueue(Protocol):
    def reject(self, messages: list[Any], *, error: str | None = None) -> object: ...


class ReleaseQueue(Protocol):
    def release(self, messages: list[Any]) -> object: ...


class GroupedQueue(Protocol):
    def message_group(self, message: Any) -> Hashable | None: ...
