"""What every adapter's queue class shares: ``with`` closes it, and it pickles as its settings.

Process mode sends the queue to no child, but a user may pickle one (or a handler holding
one): a copy opens its own connections in its own process, from ``settings()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ReopenableQueue", "reopen"]

Q = TypeVar("Q", bound="ReopenableQueue")


class ReopenableQueue:
    """Base of the shipped queues: subclasses define ``close()`` and ``settings()``, the
    keyword arguments that open the queue again."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: Q) -> Q:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its settings: a copy in another process opens its own connections.
        settings: Callable[[], dict[str, Any]] = getattr(self, "settings")  # noqa: B009
        return (reopen, (type(self), settings()))


def reopen(cls: type[Q], settings: dict[str, Any]) -> Q:
    """Open a queue of ``cls`` from ``settings`` (what a pickled queue becomes)."""
    return cls(**settings)
