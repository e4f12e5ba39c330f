"""A private PostgreSQL restarted under a running consumer: the pool and the LISTEN
connection come back by themselves (LISTEN is not left deaf), and nothing is lost."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_helpers import IN_CI, psycopg

from queue_consumer import Consumer
from queue_consumer.adapters.postgres import PostgresMessage, PostgresQueue
from queue_consumer.testing import wait_until

BIN = Path("/usr/lib/postgresql/15/bin")


class PrivateServer:
    """initdb + pg_ctl in a temp dir, on a free port, as the postgres user when root."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="qc-pg-"))
        self.data = self.base / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]
        self._run(BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *command: object) -> None:
        subprocess.run(
            [*self._prefix, *map(str, command)], check=True, capture_output=True, timeout=120
        )

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            BIN / "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.base / "log",
            "-w",
            *extra,
            action,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")


def listening(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
        ).fetchone()
    return bool(row and row[0])


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    if not (BIN / "initdb").exists() or (os.geteuid() == 0 and not shutil.which("runuser")):
        if IN_CI:
            pytest.fail(f"{BIN}/initdb is needed for the restart test in CI")
        pytest.skip(f"no {BIN}/initdb here")
    private = PrivateServer()
    try:
        private.start()
        yield private
    finally:
        try:
            private.stop()
        finally:
            shutil.rmtree(private.base, ignore_errors=True)


def test_a_server_restart_under_a_running_consumer_loses_nothing(
    server: PrivateServer,
) -> None:
    queue = PostgresQueue(server.url, "jobs", wait_time=5, poll_interval=5, visibility_timeout=30)
    producer = PostgresQueue(server.url, "jobs", heartbeat=False)
    handled: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(messages: Iterator[PostgresMessage]) -> None:
        for message in messages:
            with lock:
                handled[message.body] += 1

    try:
        producer.put_many([f"before-{n}" for n in range(100)])
        with Consumer(queue, handler, max_workers=2, max_handlers=4, messages_bulk_size=5):
            wait_until(lambda: len(handled) == 100, timeout=30, message="first half")
            wait_until(lambda: listening(server.url), timeout=10, message="LISTEN")
            server.restart()  # every connection dies; the data stays
            producer.put_many([f"after-{n}" for n in range(100)])  # its pool recovers too
            wait_until(lambda: len(handled) == 200, timeout=60, message=f"{len(handled)}")
            wait_until(lambda: queue.statistics().listener_reconnects >= 1, timeout=30)
            # NOTIFY reaches the new LISTEN connection: picked up well before the 5 s poll.
            heard = queue.statistics().notifications
            time.sleep(0.5)  # the pollers are waiting again
            started = time.monotonic()
            producer.put("late")
            wait_until(lambda: "late" in handled, timeout=10)
            assert time.monotonic() - started < 4
            assert queue.statistics().notifications > heard
        assert set(handled) == {f"{w}-{n}" for w in ("before", "after") for n in range(100)} | {
            "late"
        }
        assert queue.stats() == dict.fromkeys(queue.stats(), 0)
    finally:
        queue.close()
        producer.close()
