"""Run a handler on a chunk and say which of its messages succeeded, failed, or were never tried.

This is the whole iterator rule, kept pure and picklable so that it runs the same in a
thread or in a child process. It returns *counts and indices*, never messages: the caller
keeps its own list and slices it, so messages never have to travel back.

The rule (the seed's conveyor): the handler gets an iterator.
- It returns: the messages it took succeeded; those it never took failed (it chose not to
  process them: an attempt is spent, so such a handler cannot loop for ever).
- It raises holding message *k*: those before *k* succeeded, *k* failed, and those after
  *k* were never tried: they go back through ``release``, spending no attempt.
- It raises before taking any: the whole chunk failed (the error is the chunk's).
- It raises ``PartialFailure(failed)``: exactly those failed, all others succeeded.
- It raises ``PermanentFailure``: as any error, but the failed message is dead-lettered.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import length_hint
from typing import Any, TypeVar

from .errors import PartialFailure, PermanentFailure

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one chunk: ``succeeded`` leading messages, then ``failed`` ones, then
    the untried rest; or, with ``failed_indices`` (a ``PartialFailure``), exactly those failed.

    ``error`` is the handler's traceback as text (the exception may not pickle);
    ``permanent`` sends the failed ones to the dead letters.
    """

    succeeded: int
    failed: int = 0
    error: str | None = None
    failed_indices: tuple[int, ...] | None = None
    permanent: bool = False

    def split(self, chunk: Sequence[M]) -> tuple[list[M], list[M], list[M]]:
        """Return (succeeded, failed, untried) messages of ``chunk``."""
        if self.succeeded >= len(chunk):
            return list(chunk), [], []
        if self.failed_indices is not None:
            bad = set(self.failed_indices)
            return (
                [m for i, m in enumerate(chunk) if i not in bad],
                [m for i, m in enumerate(chunk) if i in bad],
                [],
            )
        end = self.succeeded + self.failed
        return list(chunk[: self.succeeded]), list(chunk[self.succeeded : end]), list(chunk[end:])


def failed_whole(size: int, error: str) -> Outcome:
    """The chunk failed as a whole (its handler process died, say)."""
    return Outcome(0, size, error)


def run_handler(handler: Callable[..., object], chunk: list[Any]) -> Outcome:
    """Call ``handler(iter(chunk))`` and count what it took, whatever happens."""
    size = len(chunk)
    remaining = iter(chunk)
    try:
        handler(remaining)
    except PartialFailure as exc:
        if not exc.failed:  # "these failed: none of them"
            return succeeded_all(size)
        return Outcome(0, 0, format_exception(exc), _indices_of(exc.failed, chunk))
    except BaseException as exc:  # sys.exit() in a handler too: its chunk must still settle
        # A list iterator knows exactly how many items are left: no per-message counting.
        taken = size - length_hint(remaining)
        permanent = isinstance(exc, PermanentFailure)
        if taken == 0:
            return Outcome(0, size, format_exception(exc), permanent=permanent)
        return Outcome(taken - 1, 1, format_exception(exc), permanent=permanent)
    taken = size - length_hint(remaining)
    if taken < size:
        return Outcome(taken, size - taken, untaken_error(size - taken, size))
    return succeeded_all(size)


def succeeded_all(size: int) -> Outcome:
    """The outcome of a chunk that succeeded whole: made once per size, the common case."""
    outcome = _ALL.get(size)
    if outcome is None:
        outcome = _ALL[size] = Outcome(size)
    return outcome


_ALL: dict[int, Outcome] = {}


def untaken_error(untaken: int, size: int) -> str:
    return (
        f"the handler returned without taking {untaken} of its {size} message(s), so they "
        "failed: take each message from the iterator (a generator function or an early "
        "return takes none)"
    )


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
