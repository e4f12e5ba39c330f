"""Test plumbing for the JetStream adapter: the shared server, uniquely named streams that
are deleted afterwards, and private ``nats-server -js`` processes for fault tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nats", reason="the [nats] extra (nats-py) is not installed")

import nats
import nats.js.errors

from queue_consumer.adapters.nats import JetStreamQueue


def _root_conftest() -> Any:
    """tests/conftest.py, by path: the name ``conftest`` is ambiguous on sys.path."""
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("_queue_consumer_tests_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_conftest = _root_conftest()
IN_CI: bool = _conftest.IN_CI
require_server: Callable[[str, str, int], None] = _conftest.require_server

HOST, PORT = "127.0.0.1", 4222
SHARED = f"nats://{HOST}:{PORT}"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

MakeQueue = Callable[..., JetStreamQueue]


def unique(prefix: str = "QCT") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def delete_streams(server: str, names: list[str], **connect: Any) -> None:
    """Delete these streams (only these: the server is shared); missing ones are fine."""

    async def run() -> None:
        nc = await nats.connect(server, connect_timeout=5, max_reconnect_attempts=1, **connect)
        try:
            js = nc.jetstream()
            for name in names:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(run())


@pytest.fixture
def shared_server() -> str:
    require_server("NATS", HOST, PORT)
    return SHARED


@pytest.fixture
def make_queue(shared_server: str) -> Iterator[MakeQueue]:
    """``make_queue(**options)``: a JetStreamQueue on a new stream of the shared server.
    Streams (and their dead-letter streams) are deleted after the test."""
    made: list[JetStreamQueue] = []
    streams: list[str] = []

    def make(stream: str | None = None, **options: Any) -> JetStreamQueue:
        name = stream or unique()
        options.setdefault("wait_time", 0.5)
        queue = JetStreamQueue(name, servers=shared_server, **options)
        made.append(queue)
        streams.extend([queue.stream, f"{queue.stream}_DEAD"])
        if "dead_letter_stream" in options:
            streams.append(options["dead_letter_stream"])
        return queue

    yield make
    for queue in made:
        queue.close()
    delete_streams(shared_server, sorted(set(streams)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class PrivateServer:
    """``nats-server -js`` on a free port with its store in ``directory``: start, kill -9,
    start again on the same port and store (a file-backed stream survives)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        if not os.path.exists(NATS_SERVER):
            if IN_CI:
                pytest.fail(f"{NATS_SERVER} is missing; CI must run the NATS fault tests")
            pytest.skip(f"{NATS_SERVER} is not installed")
        self.port = free_port()
        self.url = f"nats://{HOST}:{self.port}"
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "nats-server.log"

    def start(self) -> None:
        command = [NATS_SERVER, "-js", "-a", HOST, "-p", str(self.port)]
        command += ["-sd", str(self.directory / "store"), "-l", str(self.log), *self.extra]
        with (self.directory / "nats-server.out").open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output_text = (self.directory / "nats-server.out").read_text(errors="replace")
                raise RuntimeError(f"nats-server did not start: {output_text[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[PrivateServer]:
    server = PrivateServer(tmp_path)
    server.start()
    yield server
    server.stop()
