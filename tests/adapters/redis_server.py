"""Redis test plumbing: uniquely named streams on the shared local server (removed after
each test), and private ``redis-server`` processes for kill / restart tests."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis")

import redis

from queue_consumer.adapters.redis import RedisStreamQueue
from queue_consumer.testing import wait_until

HOST, PORT = "127.0.0.1", 6379
LOCAL = f"redis://{HOST}:{PORT}/0"

MakeQueue = Callable[..., RedisStreamQueue]


def _load_require_server() -> Callable[[str, str, int], None]:
    """tests/conftest.py's require_server (skip locally, fail in CI), loaded by path: a
    plain ``import conftest`` here finds tests/adapters/conftest.py instead."""
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("_queue_consumer_tests_root", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.require_server  # type: ignore[no-any-return]


require_server = _load_require_server()


def delete_stream(url: str, stream: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.delete(*(f"{{{stream}}}{suffix}" for suffix in ("", ":dead", ":delayed", ":errors")))
    finally:
        client.close()


@pytest.fixture
def redis_url() -> str:
    require_server("Redis", HOST, PORT)
    return LOCAL


@pytest.fixture
def stream_name(redis_url: str) -> Iterator[str]:
    """A unique stream name; its keys are deleted after the test."""
    name = f"qc-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_stream(redis_url, name)


@pytest.fixture
def make_queue(redis_url: str) -> Iterator[MakeQueue]:
    """``make_queue(stream=None, **kwargs)``: a queue on a fresh (or the given) stream."""
    queues: list[RedisStreamQueue] = []
    streams: set[str] = set()

    def make(stream: str | None = None, url: str = redis_url, **kwargs: Any) -> RedisStreamQueue:
        name = stream or f"qc-test-{uuid.uuid4().hex[:12]}"
        kwargs.setdefault("block", 0.2)
        queue = RedisStreamQueue(url, name, **kwargs)
        queues.append(queue)
        streams.add(name)
        return queue

    yield make
    for queue in queues:
        queue.close()
    for name in streams:
        delete_stream(redis_url, name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of our own on a free port, in a temp dir, to kill and restart."""

    def __init__(
        self, directory: Path, *, appendonly: bool = False, args: tuple[str, ...] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.args = args
        self.password = dict(zip(args[::2], args[1::2], strict=False)).get("--requirepass")
        self.port = free_port()
        auth = f":{self.password}@" if self.password else ""
        self.url = f"redis://{auth}{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            command += ["--appendfsync", "always"]
        command += self.args
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self.ping, timeout=10, interval=0.05, message="private redis-server up")

    def ping(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self, down_for: float = 0.5) -> None:
        self.kill()
        time.sleep(down_for)  # the outage itself, not a wait for a condition
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    servers: list[PrivateRedis] = []

    def start(*, appendonly: bool = False, args: tuple[str, ...] = ()) -> PrivateRedis:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = PrivateRedis(directory, appendonly=appendonly, args=args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()
