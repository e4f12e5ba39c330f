"""The examples in public docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "queue_consumer._checks",
        "queue_consumer._consumer",
        "queue_consumer.adapters._bodies",
        "queue_consumer.adapters._options",
        "queue_consumer.adapters.memory",
        "queue_consumer._hooks",
        "queue_consumer.testing",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), raise_on_error=False)
    assert result.failed == 0
    assert result.attempted > 0
