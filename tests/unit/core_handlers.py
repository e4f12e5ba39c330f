"""Module-level handlers and helpers, importable by handler processes (process mode)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from queue_consumer import PartialFailure


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def fail_on_body(messages: Iterator[Any]) -> None:
    """Fails on any message whose body is a string starting with 'fail'."""
    for message in messages:
        if str(message.body).startswith("fail"):
            raise RuntimeError(f"cannot handle {message.body}")


def take_two_then_return(messages: Iterator[Any]) -> None:
    next(messages)
    next(messages)


def fail_odd_bulk(messages: Iterator[Any]) -> None:
    batch = list(messages)
    raise PartialFailure([m for m in batch if m.body % 2])


def sleep_on_body(messages: Iterator[Any]) -> None:
    """Sleeps ``body`` seconds when the body is a number."""
    for message in messages:
        if isinstance(message.body, (int, float)):
            time.sleep(message.body)


def suicide_on_body(messages: Iterator[Any]) -> None:
    for message in messages:
        if message.body == "die":
            os.kill(os.getpid(), 9)


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("no pickle")
        self.lock = __import__("threading").Lock()


def raise_unpicklable(messages: Iterator[Any]) -> None:
    next(messages)
    raise UnpicklableError()


def pid_of_handler(messages: Iterator[Any]) -> None:
    for message in messages:
        message.body.append(os.getpid())  # only visible in thread mode


INITIALIZED: list[int] = []


def initializer() -> None:
    INITIALIZED.append(os.getpid())
    os.environ["QC_TEST_INITIALIZED"] = "1"


def check_initialized(messages: Iterator[Any]) -> None:
    if os.environ.get("QC_TEST_INITIALIZED") != "1":
        raise RuntimeError("initializer did not run here")
    for _ in messages:
        pass


def failing_initializer() -> None:
    raise RuntimeError("initializer exploded")


def generator_handler(messages: Iterator[Any]) -> Iterator[Any]:
    """Wrong: a generator function runs none of its code when called."""
    yield from messages


def permanent_on_body(messages: Iterator[Any]) -> None:
    """Raises PermanentFailure on messages whose body starts with 'poison'."""
    from queue_consumer import PermanentFailure

    for message in messages:
        if str(message.body).startswith("poison"):
            raise PermanentFailure(f"{message.body} can never succeed")


def flaky_initializer(marker: str) -> None:
    """Fails once (while the ``marker`` file exists, which it removes), then succeeds."""
    if os.path.exists(marker):
        os.remove(marker)
        raise RuntimeError("initializer failed the first time")


@contextlib.contextmanager
def tagged(tag: str) -> Iterator[None]:
    """A context (like a trace span's) the handler can see: module-level, so it pickles."""
    os.environ["QC_TEST_TAG"] = tag
    try:
        yield
    finally:
        os.environ.pop("QC_TEST_TAG", None)


def write_tag(path: str, messages: Iterator[Any]) -> None:
    for message in messages:
        with open(path, "a") as file:
            file.write(f"{message.body}:{os.environ.get('QC_TEST_TAG')}\n")
