"""The iterator rule as a table: run_handler's Outcome for each way a handler ends (no threads)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from queue_consumer import PartialFailure, PermanentFailure
from queue_consumer._tracking import Outcome, run_handler

CHUNK = ["a", "b", "c", "d"]


def take_all(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def raise_on(body: str, error: type[Exception] = RuntimeError) -> Callable[[Iterator[Any]], None]:
    def handler(messages: Iterator[Any]) -> None:
        for message in messages:
            if message == body:
                raise error(body)

    return handler


def take(n: int) -> Callable[[Iterator[Any]], None]:
    def handler(messages: Iterator[Any]) -> None:
        for _ in range(n):
            next(messages)

    return handler


def partial(*failed: str) -> Callable[[Iterator[Any]], None]:
    def handler(messages: Iterator[Any]) -> None:
        list(messages)
        raise PartialFailure(list(failed))

    return handler


def raise_first(messages: Iterator[Any]) -> None:
    raise ConnectionError("database down")


@pytest.mark.parametrize(
    ("handler", "succeeded", "failed", "untried", "permanent"),
    [
        (take_all, "abcd", "", "", False),
        (raise_on("c"), "ab", "c", "d", False),
        (raise_on("a"), "", "a", "bcd", False),
        (raise_on("d"), "abc", "d", "", False),
        (raise_on("b", PermanentFailure), "a", "b", "cd", True),
        (take(2), "ab", "cd", "", False),  # returned early: the untaken failed
        (take(0), "", "abcd", "", False),
        (partial("b", "d"), "ac", "bd", "", False),
        (partial(), "abcd", "", "", False),
        (partial("zz"), "", "abcd", "", False),  # not in the chunk: when in doubt, all fail
        (raise_first, "", "abcd", "", False),  # raised holding none: the chunk failed
    ],
)
def test_outcome_of_each_ending(
    handler: Callable[[Iterator[Any]], None],
    succeeded: str,
    failed: str,
    untried: str,
    permanent: bool,
) -> None:
    outcome = run_handler(handler, list(CHUNK))
    assert outcome.split(CHUNK) == (list(succeeded), list(failed), list(untried))
    assert outcome.permanent is permanent
    assert (outcome.error is None) == (not failed)


def test_errors_are_tracebacks_and_outcomes_pickle() -> None:
    import pickle

    outcome = run_handler(raise_on("b"), list(CHUNK))
    assert outcome.error is not None and "RuntimeError: b" in outcome.error
    assert "raise error(body)" in outcome.error
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    early = run_handler(take(1), list(CHUNK))
    assert early.error is not None and "without taking 3 of its 4" in early.error
    assert Outcome(4).split(CHUNK) == (CHUNK, [], [])
