"""The local RabbitMQ for the adapter tests: unique queues removed at the end, and the
server-side fault (``rabbitmqctl close_connection``) the recovery tests need."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("pika")

from queue_consumer.adapters.rabbitmq import RabbitMQQueue
from queue_consumer.testing import wait_until


def _load_require_server() -> Callable[[str, str, int], None]:
    # tests/conftest.py by path: two conftest modules share the name "conftest".
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("qc_tests_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.require_server  # type: ignore[no-any-return]


require_server = _load_require_server()

AMQP_URL = os.environ.get("QC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def unique(prefix: str = "qc-rmq-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def server_url() -> str:
    """The server's URL; skips locally (fails in CI) when RabbitMQ does not listen."""
    parts = urlsplit(AMQP_URL)
    require_server("RabbitMQ", parts.hostname or "127.0.0.1", parts.port or 5672)
    return AMQP_URL


@pytest.fixture
def rabbit() -> str:
    """The server's URL (``server_url()``)."""
    return server_url()


@pytest.fixture
def make_queue(rabbit: str) -> Iterator[Callable[..., RabbitMQQueue]]:
    """``make_queue(name=None, **options)``: a RabbitMQQueue on a fresh queue. Every queue
    it made is closed, and its queues (main, hold, dead) deleted, at the end."""
    made: list[RabbitMQQueue] = []

    def make(name: str | None = None, **options: Any) -> RabbitMQQueue:
        options.setdefault("retry_delay", 0.05)
        options.setdefault("max_retry_delay", 0.2)
        options.setdefault("close_timeout", 5.0)
        queue = RabbitMQQueue(rabbit, name or unique(), **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:  # first: a consumer whose queue is deleted would declare it again
        queue.close()
    deleted: set[str] = set()
    for queue in made:
        if queue.queue not in deleted:
            deleted.add(queue.queue)
            try:
                cleaner = RabbitMQQueue(rabbit, queue.queue, **_same_topology(queue))
                cleaner.delete()
                cleaner.close()
            except Exception as exc:  # pragma: no cover - report, do not hide the test's result
                print(f"could not delete RabbitMQ queue {queue.queue}: {exc!r}")


def _same_topology(queue: RabbitMQQueue) -> dict[str, Any]:
    s = queue.settings
    return {
        "queue_type": s.queue_type,
        "max_attempts": s.max_attempts,
        "retry_delay": s.retry_delay,
        "max_retry_delay": s.max_retry_delay,
        "dead_letter_queue": s.dead_letter_queue,
        "declare": False,
    }


class LeaseLike:
    """The queue for check_queue_contract, whose messages "left alone come back after their
    lease". AMQP has no lease: a delivery comes back when its channel closes. So before
    the check's third ``put`` (the drain by a consumer, whose handlers hold deliveries
    while other workers find none), a ``get()`` that finds nothing while deliveries are
    held closes the channel (``recover()``), which is what a consumer that died would do."""

    def __init__(self, queue: RabbitMQQueue) -> None:
        self.queue = queue
        self.cleanup = queue.cleanup
        self.reject = queue.reject
        self.release = queue.release
        self.puts = 0

    def put(self, bodies: list[str]) -> None:
        self.puts += 1
        self.queue.put_many(bodies)

    def get(self) -> list[Any]:
        messages = self.queue.get()
        if not messages and self.puts <= 2 and self.queue.stats()["held"]:
            self.queue.recover()
        return messages


def connections_named(name: str) -> list[str]:
    """Erlang pids of the server's connections whose client said ``connection_name``."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl is not installed")
    out = subprocess.run(
        [ctl, "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [
        line.split("\t", 1)[0] for line in out.splitlines() if f'"connection_name","{name}"' in line
    ]


def close_connections(name: str) -> int:
    """``rabbitmqctl close_connection`` every connection named ``name``; how many."""
    wait_until(lambda: connections_named(name), 30, interval=0.5, message=f"connection {name}")
    pids = connections_named(name)
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "closed by a queue_consumer test"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    return len(pids)
