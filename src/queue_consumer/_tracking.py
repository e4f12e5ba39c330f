"""Run a handler on a chunk and say which of its messages succeeded.

This is the whole failure-tracking rule, kept pure and picklable so that it runs the same
in a thread or in a child process. It returns *counts and indices*, never messages: the
caller keeps its own list and slices it, so messages never have to travel back.

The rule (the seed's conveyor): the handler gets an iterator. If it returns, the messages
it took succeeded and those it never took failed. If it raises, the messages taken before
the one in hand succeeded; the one in hand and the rest failed. A handler may instead
raise ``PartialFailure(failed)`` to name the failed messages exactly.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import length_hint
from typing import Any

from .errors import PartialFailure


@dataclass(frozen=True)
class Outcome:
    """What became of one chunk.

    ``succeeded`` counts the leading messages that succeeded, unless ``failed_indices``
    is set (a ``PartialFailure``): then exactly those indices failed and all others
    succeeded. ``error`` is the handler's traceback as text (it may not pickle).
    """

    succeeded: int
    failed_indices: tuple[int, ...] | None = None
    error: str | None = None

    def all_succeeded(self, size: int) -> bool:
        if self.failed_indices is not None:
            return not self.failed_indices
        return self.succeeded >= size

    def split(self, chunk: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """Return (succeeded, failed) messages of ``chunk``."""
        if self.failed_indices is None:
            return list(chunk[: self.succeeded]), list(chunk[self.succeeded :])
        failed = set(self.failed_indices)
        return (
            [m for i, m in enumerate(chunk) if i not in failed],
            [m for i, m in enumerate(chunk) if i in failed],
        )


def run_handler(handler: Callable[..., object], chunk: list[Any]) -> Outcome:
    """Call ``handler(iter(chunk))`` and count what it took, whatever happens."""
    remaining = iter(chunk)
    try:
        handler(remaining)
    except PartialFailure as exc:
        return Outcome(0, _indices_of(exc.failed, chunk), format_exception(exc))
    except BaseException as exc:  # sys.exit() in a handler too: its chunk must still settle
        # A list iterator knows exactly how many items are left: no per-message counting.
        taken = len(chunk) - length_hint(remaining)
        return Outcome(max(taken - 1, 0), None, format_exception(exc))
    return Outcome(len(chunk) - length_hint(remaining))


def _indices_of(failed: list[Any], chunk: list[Any]) -> tuple[int, ...]:
    """Find failed messages in the chunk by identity, then equality.

    A failed item that is not in the chunk at all fails the whole chunk: when in doubt,
    a message stays in the queue.
    """
    ids = {id(m) for m in failed}
    indices = [i for i, m in enumerate(chunk) if id(m) in ids or m in failed]
    if len(indices) < len({id(m) for m in failed}):
        return tuple(range(len(chunk)))
    return tuple(indices)


def format_exception(exc: BaseException) -> str:
    """The traceback as text: it crosses process boundaries where the exception may not."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
