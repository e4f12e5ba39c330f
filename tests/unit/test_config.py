"""Bad input fails at construction with a message that says what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import core_handlers
import pytest

from queue_consumer import ConfigurationError, Consumer, MemoryQueue


def test_a_queue_without_get() -> None:
    with pytest.raises(ConfigurationError, match=r"get\(\) method"):
        Consumer(object(), core_handlers.noop)


def test_no_handler_anywhere() -> None:
    with pytest.raises(ConfigurationError, match="no handler"):
        Consumer(MemoryQueue())


def test_a_handler_that_is_not_callable() -> None:
    with pytest.raises(ConfigurationError, match="handler must"):
        Consumer(MemoryQueue(), handler="tasks.handle")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_workers", 0),
        ("max_handlers", -1),
        ("messages_bulk_size", 0),
        ("max_workers", 1.5),
        ("max_handlers", True),
        ("max_stuck_handlers", -1),
    ],
)
def test_sizes_must_be_positive_integers(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Consumer(MemoryQueue(), core_handlers.noop, **{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("worker_polling_time", -1),
        ("worker_polling_time", "1"),
        ("shutdown_timeout", -0.5),
        ("handler_timeout", 0),
        ("handler_timeout", float("nan")),
    ],
)
def test_times_must_be_non_negative_seconds(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Consumer(MemoryQueue(), core_handlers.noop, **{name: value})


def test_pool_initializer_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="pool_initializer"):
        Consumer(MemoryQueue(), core_handlers.noop, pool_initializer=42)  # type: ignore[arg-type]


def test_process_mode_rejects_a_handler_that_cannot_reach_the_children() -> None:
    def local_handler(messages: Iterator[Any]) -> None:
        pass

    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        Consumer(MemoryQueue(), local_handler, with_thread_executor=False)
    with pytest.raises(ConfigurationError, match="pool_initializer"):
        Consumer(
            MemoryQueue(),
            core_handlers.noop,
            pool_initializer=lambda: None,
            with_thread_executor=False,
        )


def test_process_mode_rejects_an_unknown_start_method() -> None:
    with pytest.raises(ConfigurationError, match="mp_context"):
        Consumer(MemoryQueue(), core_handlers.noop, with_thread_executor=False, mp_context="nope")


def test_a_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Consumer(MemoryQueue(), core_handlers.noop, max_workers=0)


def test_memory_queue_validates_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="visibility_timeout"):
        MemoryQueue(visibility_timeout=0)
    with pytest.raises(ConfigurationError, match="max_messages"):
        MemoryQueue(max_messages=0)
