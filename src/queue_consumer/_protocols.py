"""The queue contract: what queue_consumer needs from a queue, and nothing more.

Only ``get()`` is required. Every other method is a capability, optional and looked up
once when the consumer is built, so a plain object with ``get()`` is a queue. Each
capability is a Protocol here, so mypy checks a queue class against what it claims
(``_: SupportsRelease[Msg] = MyQueue()``).

- ``get() -> Iterable[M]``: the next messages (may be empty). Required.
- ``cleanup(messages)``: remove messages whose handler succeeded.
- ``reject(messages)``: messages whose handler failed (visible again, maybe after a
  backoff; dead-lettered after too many attempts). Without it, failed messages are left to
  the queue's own redelivery (a visibility timeout, say). A ``reject`` that takes an
  ``error`` keyword gets the handler's traceback as text (kept with a dead letter).
- ``release(messages)``: fetched but never handled (shutdown, the tail of a message group
  held back by a failure, the messages after a chunk's failing one). Back at once, the
  attempt not counted where the broker allows. Without it, ``reject`` is used.
- ``handler(messages)``: the handler, if none is given to the consumer.
- ``message_group(message) -> Hashable | None``: messages of one group (not ``None``) are
  handled one chunk after another, in order; a failure holds back the rest of the group.
- ``dead_letter(messages, *, error=None)``: messages that can never succeed (the handler
  raised ``PermanentFailure``): straight to the dead letters. Without it, ``reject``.
- ``extend(messages, timeout)``: keep leased messages invisible longer.
- ``interrupt()``: shutdown began; a ``get()`` waiting for messages returns at once.
- ``max_settle_batch``: an int attribute: how many messages one settle call may carry
  (default: as many as one ``get()`` returned).
- ``close()``: release the queue's connections and threads.
- ``stats()``: a flat mapping with at least ``depth``, ``in_flight`` and ``dead_letters``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "Handler",
    "Queue",
    "SupportsCleanup",
    "SupportsClose",
    "SupportsDeadLetter",
    "SupportsDeadLetters",
    "SupportsExtend",
    "SupportsGroups",
    "SupportsInterrupt",
    "SupportsReject",
    "SupportsRejectWithError",
    "SupportsRelease",
    "SupportsStats",
]

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)
M_contra = TypeVar("M_contra", contravariant=True)

#: A handler takes an iterator of messages. What it took before raising succeeded.
Handler = Callable[[Iterator[Any]], object]


@runtime_checkable
class Queue(Protocol[M_co]):
    """Anything with ``get()``. See the module docstring for the optional capabilities."""

    def get(self) -> Iterable[M_co]: ...


class SupportsCleanup(Protocol[M_contra]):
    def cleanup(self, messages: Sequence[M_contra], /) -> object: ...


class SupportsReject(Protocol[M_contra]):
    def reject(self, messages: Sequence[M_contra], /) -> object: ...


class SupportsRejectWithError(Protocol[M_contra]):
    def reject(self, messages: Sequence[M_contra], /, *, error: str | None = None) -> object: ...


class SupportsDeadLetter(Protocol[M_contra]):
    def dead_letter(
        self, messages: Sequence[M_contra], /, *, error: str | None = None
    ) -> object: ...


class SupportsInterrupt(Protocol):
    def interrupt(self) -> object: ...


class SupportsRelease(Protocol[M_contra]):
    def release(self, messages: Sequence[M_contra], /) -> object: ...


class SupportsGroups(Protocol[M_contra]):
    def message_group(self, message: M_contra, /) -> Hashable | None: ...


class SupportsExtend(Protocol[M_contra]):
    def extend(self, messages: Sequence[M_contra], /, timeout: float | None = None) -> object: ...


class SupportsClose(Protocol):
    def close(self) -> object: ...


class SupportsStats(Protocol):
    def stats(self) -> Mapping[str, Any]: ...


class SupportsDeadLetters(Protocol):
    def dead_letters(self, limit: int = 100) -> Sequence[Any]: ...

    def redrive(self, ids: Iterable[Any] | None = None) -> int: ...
