"""Chunk planning as a table: bulk size and message groups (no threads)."""

from __future__ import annotations

from typing import Any

import pytest

from queue_consumer._worker import plan_jobs


def first_letter(message: str) -> str | None:
    return None if message[0] == "_" else message[0]


@pytest.mark.parametrize(
    ("messages", "bulk", "group", "jobs"),
    [
        ([], 3, None, []),
        (list("abcde"), 2, None, [([["a", "b"]], False), ([["c", "d"]], False), ([["e"]], False)]),
        (list("abc"), 10, None, [([["a", "b", "c"]], False)]),
        (
            ["a1", "b1", "a2", "a3", "_x"],
            2,
            first_letter,
            [([["a1", "a2"], ["a3"]], True), ([["b1"]], True), ([["_x"]], False)],
        ),
    ],
)
def test_jobs(messages: list[str], bulk: int, group: Any, jobs: list[Any]) -> None:
    assert plan_jobs(messages, bulk, group) == jobs
