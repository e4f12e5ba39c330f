"""The seed README's API, verbatim: positions, defaults, queue.handler, any object with get()."""

from __future__ import annotations

import inspect
import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

from fakes import GetOnlyQueue, RecordingQueue

from queue_consumer import Consumer
from queue_consumer.testing import wait_until


def test_signature_keeps_the_seed_positions_and_defaults() -> None:
    parameters = inspect.signature(Consumer).parameters
    seed = [
        ("queue", inspect.Parameter.empty),
        ("handler", None),
        ("max_workers", multiprocessing.cpu_count()),
        ("max_handlers", multiprocessing.cpu_count()),
        ("messages_bulk_size", 1),
        ("worker_polling_time", 0),
        ("pool_initializer", None),
        ("with_thread_executor", True),
    ]
    positional = [
        (name, p.default)
        for name, p in parameters.items()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert positional == seed
    extra = [p for name, p in parameters.items() if name not in dict(seed)]
    assert extra and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)
    assert inspect.signature(Consumer.supervise).parameters["blocking"].default is False
    assert inspect.signature(Consumer.supervise).parameters["polling_time"].default == 1


class SeedStyleQueue:
    """The seed README's queue shape: get, cleanup and handler on one object."""

    def __init__(self, items: list[int]) -> None:
        self._items = items
        self._lock = threading.Lock()
        self.done: list[int] = []
        self.cleaned: list[int] = []

    def get(self) -> list[int]:
        with self._lock:
            batch, self._items = self._items[:10], self._items[10:]
            return batch

    def cleanup(self, messages: list[int]) -> None:
        with self._lock:
            self.cleaned.extend(messages)

    def handler(self, messages: Iterator[int]) -> None:
        for message in messages:
            with self._lock:
                self.done.append(message)


def test_seed_example_queue_with_its_own_handler() -> None:
    queue = SeedStyleQueue(list(range(100)))
    consumer = Consumer(queue)
    consumer.start()
    consumer.supervise()  # non-blocking, as in the seed's examples besides blocking=True
    wait_until(lambda: len(queue.cleaned) == 100, message="all messages cleaned up")
    consumer.shutdown()
    assert sorted(queue.done) == list(range(100))
    assert sorted(queue.cleaned) == list(range(100))


def test_a_queue_needs_only_get_and_a_separate_handler() -> None:
    seen: list[Any] = []
    lock = threading.Lock()

    def handler(messages: Iterator[Any]) -> None:
        for message in messages:
            with lock:
                seen.append(message)

    consumer = Consumer(GetOnlyQueue(range(50)), handler=handler, max_workers=2, max_handlers=3)
    consumer.start()
    wait_until(lambda: len(seen) == 50)
    consumer.shutdown()
    assert sorted(seen) == list(range(50))


def test_positional_arguments_in_seed_order() -> None:
    queue = RecordingQueue()
    queue.put_many(range(20))
    chunk_sizes: list[int] = []

    def handler(messages: Iterator[Any]) -> None:
        chunk_sizes.append(sum(1 for _ in messages))

    consumer = Consumer(queue, handler, 1, 2, 4, 0, None, True)
    with consumer:
        wait_until(lambda: len(queue) == 0)
    assert max(chunk_sizes) == 4 and sum(chunk_sizes) == 20
    assert sum(queue.cleaned.values()) == 20
