"""One entry per queue: how to make a fresh queue URL, cut its connections, restart its
server, read its dead letters. The suite runs every entry that is importable and reachable.

Add a queue by writing a :class:`Backend` subclass (``new_queue`` at least) and listing it
in ``KINDS``; every fault whose hook the backend lacks reads "skipped: <reason>".
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from queue_consumer import open_queue

from . import _servers

#: Short leases so that what a killed consumer held comes back within seconds.
LEASE = 3
ATTEMPTS = 3


def replace_host(url: str, host: str, port: int) -> str:
    """``url`` with its network location moved to host:port (user info kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class Target:
    """One fresh queue of a backend, for one scenario."""

    def __init__(self, backend: Backend, url: str, tag: str) -> None:
        self.backend = backend
        self.url = url
        self.tag = tag
        self._queue: Any = None
        self.dead: set[str] = set()

    @property
    def queue(self) -> Any:
        if self._queue is None:
            self._queue = open_queue(self.url)
        return self._queue

    def put(self, bodies: list[str]) -> None:
        for start in range(0, len(bodies), 100):
            self.queue.put_many(bodies[start : start + 100])

    def dead_letters(self) -> set[str]:
        """Bodies seen in the dead letters so far (cumulative: reading may hide them)."""
        self.dead |= set(self.backend.read_dead_letters(self))
        return self.dead

    def depth(self) -> str:
        with contextlib.suppress(Exception):
            stats = self.queue.stats()
            return f"depth={stats.get('depth')} in_flight={stats.get('in_flight')}"
        return "depth=?"

    def close(self) -> None:
        if self._queue is not None and hasattr(self._queue, "close"):
            with contextlib.suppress(Exception):
                self._queue.close()
        with contextlib.suppress(Exception):
            self.backend.remove(self)


class Backend:
    """A queue kind on its servers. Hooks left as None make their faults skip."""

    name = "?"
    module = ""  #: the adapter package that must import
    #: why a fault does not apply here, by fault name
    not_applicable: dict[str, str] = {}  # noqa: RUF012
    duplicate_note = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            importlib.import_module(cls.module)
        except Exception as exc:
            return f"{cls.module} does not import ({type(exc).__name__}: {exc})"[:160]
        return None

    def start(self) -> None:
        """Start private servers (once per run)."""

    def stop(self) -> None:
        """Stop what start() started."""

    def new_queue(self) -> Target:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment the consumers need."""
        return {}

    def endpoint(self, target: Target) -> tuple[str, int] | None:
        """The TCP address consumers connect to (netns runs put a forwarder before it)."""
        parts = urlsplit(target.url)
        return (parts.hostname or "127.0.0.1", parts.port or 0) if parts.port else None

    def consumer_url(self, target: Target, address: tuple[str, int] | None) -> str:
        """The URL consumers use; ``address`` is where a forwarder listens."""
        if address is None:
            return target.url
        return replace_host(target.url, *address)

    cut: Callable[[Target, list[int]], str] | None = None
    restart: Callable[[Target], str] | None = None

    def read_dead_letters(self, target: Target) -> Iterable[str]:
        return [_text(d.body) for d in target.queue.dead_letters(limit=100000)]

    def remove(self, target: Target) -> None:
        """Delete what the scenario created (only on shared servers)."""


def _text(body: Any) -> str:
    return bytes(body).decode() if isinstance(body, bytes | bytearray) else str(body)


def _tag() -> str:
    return f"chaos{uuid.uuid4().hex[:10]}"


class SQLiteBackend(Backend):
    name = "sqlite"
    module = "queue_consumer.adapters.sqlite"
    not_applicable = {  # noqa: RUF012
        "cut-connections": "a local file: there is no connection to cut",
        "broker-restart": "a local file: there is no server to restart",
        "host-partition": "a local file on this host: no network between consumer and queue",
        "flaky-broker": "a local file: no requests to fail (lock contention is in every run)",
    }

    def new_queue(self) -> Target:
        tag = _tag()
        url = (
            f"sqlite:///{self.directory}/chaos.db?queue={tag}&visibility_timeout={LEASE}"
            f"&max_attempts={ATTEMPTS}&wait_time=0.5&retry_delay=0.2&max_retry_delay=1"
        )
        return Target(self, url, tag)


class SQSBackend(Backend):
    """SQS on a private moto server; ``flaky`` routes the consumers through a fault proxy."""

    name = "sqs"
    module = "queue_consumer.adapters.sqs"
    not_applicable = {  # noqa: RUF012
        "cut-connections": "HTTP: connections are per request; flaky-broker drops them",
        "broker-restart": "moto keeps queues in memory: a restart deletes them (SQS has none)",
    }
    duplicate_note = "moto's server can lose a concurrent delete (the message comes back)"

    @classmethod
    def unavailable(cls) -> str | None:
        reason = super().unavailable()
        if reason is None and importlib.util.find_spec("moto") is None:
            reason = "moto[server] is not installed"
        return reason

    def start(self) -> None:
        self.moto = _servers.Moto(self.directory)
        self.moto.start()
        os.environ.update(self.env())  # the harness opens the queue (fill, stats) too
        import boto3

        self.client = boto3.client("sqs", **self._client_kwargs())

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "endpoint_url": f"http://127.0.0.1:{self.moto.port}",
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def stop(self) -> None:
        self.moto.close()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def new_queue(self) -> Target:
        tag = _tag()
        attributes = {"VisibilityTimeout": str(LEASE)}
        queue_url = self.client.create_queue(QueueName=tag, Attributes=attributes)["QueueUrl"]
        dead_url = self.client.create_queue(QueueName=f"{tag}-dead")["QueueUrl"]
        url = (
            f"{queue_url}?region=us-east-1&wait=1&visibility_timeout={LEASE}&reject=0.5"
            f"&max_receive_count={ATTEMPTS}&dead_letter_queue={tag}-dead"
        )
        target = Target(self, url, tag)
        target.dead_url = dead_url  # type: ignore[attr-defined]
        return target

    def read_dead_letters(self, target: Target) -> Iterable[str]:
        bodies = []
        while True:
            answer = self.client.receive_message(
                QueueUrl=target.dead_url,  # type: ignore[attr-defined]
                MaxNumberOfMessages=10,
                VisibilityTimeout=600,
                WaitTimeSeconds=0,
            )
            if not answer.get("Messages"):
                return bodies
            bodies += [m["Body"] for m in answer["Messages"]]

    def remove(self, target: Target) -> None:
        for url in (target.url.split("?")[0], target.dead_url):  # type: ignore[attr-defined]
            self.client.delete_queue(QueueUrl=url)


def _redis_command(port: int, *words: str) -> bytes:
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(payload.encode())
        return sock.recv(4096)


class RedisBackend(Backend):
    """Redis Streams on a private redis-server (AOF, fsync always) in the temp dir."""

    name = "redis"
    module = "queue_consumer.adapters.redis"
    not_applicable = {"flaky-broker": "no fault proxy speaks RESP; cuts cover dropped links"}  # noqa: RUF012

    @classmethod
    def unavailable(cls) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (a private server is needed)"
        return super().unavailable()

    def start(self) -> None:
        self.server = _servers.Redis(self.directory)
        self.server.start()

    def stop(self) -> None:
        self.server.close()

    def new_queue(self) -> Target:
        tag = _tag()
        url = (
            f"redis://127.0.0.1:{self.server.port}/0?stream={tag}&claim_idle={LEASE}"
            f"&max_attempts={ATTEMPTS}&retry_delay=0.2&max_retry_delay=1&block=0.5"
        )
        return Target(self, url, tag)

    def cut(self, target: Target, pids: list[int]) -> str:  # type: ignore[override]
        answer = _redis_command(
            self.server.port, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
        )
        return f"CLIENT KILL TYPE normal: {answer.strip().decode(errors='replace')}"

    def restart(self, target: Target) -> str:  # type: ignore[override]
        self.server.restart()
        return "redis-server SIGTERM, 1 s down, started again on its AOF"


class NatsBackend(Backend):
    """NATS JetStream on a private nats-server (-js, file storage in the temp dir)."""

    name = "nats"
    module = "queue_consumer.adapters.nats"
    not_applicable = {"flaky-broker": "no fault proxy speaks NATS; cuts cover dropped links"}  # noqa: RUF012

    @classmethod
    def unavailable(cls) -> str | None:
        if shutil.which("nats-server") is None:
            return "nats-server is not installed (a private server is needed)"
        return super().unavailable()

    def start(self) -> None:
        self.server = _servers.Nats(self.directory)
        self.server.start()

    def stop(self) -> None:
        self.server.close()

    def new_queue(self) -> Target:
        tag = _tag()
        url = (
            f"nats://127.0.0.1:{self.server.port}?stream={tag}&subject={tag}.jobs"
            f"&ack_wait={LEASE}&max_attempts={ATTEMPTS}&retry_delay=0.2&max_retry_delay=1"
            f"&wait=0.5"
        )
        return Target(self, url, tag)

    def cut(self, target: Target, pids: list[int]) -> str:  # type: ignore[override]
        self.server.restart(down=0.2)
        return "nats-server has no client kill (2.9): private server restarted, 0.2 s down"

    def restart(self, target: Target) -> str:  # type: ignore[override]
        self.server.restart()
        return "nats-server SIGTERM, 1 s down, started again on its store"


class PostgresBackend(Backend):
    """PostgreSQL on a private cluster (initdb in the temp dir, run as postgres)."""

    name = "postgres"
    module = "queue_consumer.adapters.postgres"
    not_applicable = {"flaky-broker": "no fault proxy speaks the pg protocol; cuts cover it"}  # noqa: RUF012

    @classmethod
    def unavailable(cls) -> str | None:
        if not (_servers.PG_BIN / "initdb").exists():
            return f"no {_servers.PG_BIN}/initdb (a private cluster is needed)"
        return super().unavailable()

    def start(self) -> None:
        self.server = _servers.Postgres(self.directory)
        self.server.start()

    def stop(self) -> None:
        self.server.close()

    def new_queue(self) -> Target:
        tag = _tag()
        url = (
            f"postgresql://postgres@127.0.0.1:{self.server.port}/test?queue={tag}"
            f"&visibility_timeout={LEASE}&max_attempts={ATTEMPTS}&retry_delay=0.2"
            f"&max_retry_delay=1&wait_time=0.5"
        )
        return Target(self, url, tag)

    def cut(self, target: Target, pids: list[int]) -> str:  # type: ignore[override]
        sql = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = 'test' AND pid <> pg_backend_pid()"
        )
        psql = shutil.which("psql") or str(_servers.PG_BIN / "psql")
        out = subprocess.run(
            [
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.server.port),
                "-U",
                "postgres",
                "-At",
                "-d",
                "test",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"pg_terminate_backend on {out} backends"

    def restart(self, target: Target) -> str:  # type: ignore[override]
        self.server.restart()
        return "pg_ctl stop -m fast, 1 s down, pg_ctl start"


class RabbitBackend(Backend):
    """RabbitMQ on the shared server: the run closes only its own connections."""

    name = "rabbitmq"
    module = "queue_consumer.adapters.rabbitmq"
    not_applicable = {  # noqa: RUF012
        "broker-restart": "the RabbitMQ node is shared; no private node is started",
        "flaky-broker": "no fault proxy speaks AMQP; cuts cover dropped connections",
    }

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            socket.create_connection(("127.0.0.1", 5672), 2).close()
        except OSError as exc:
            return f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc})"
        return super().unavailable()

    def new_queue(self) -> Target:
        tag = _tag()
        url = (
            f"amqp://guest:guest@127.0.0.1:5672/%2F?queue={tag}&max_attempts={ATTEMPTS}"
            f"&retry_delay=0.2&max_retry_delay=1&wait_time=0.5&connection_name={tag}"
        )
        return Target(self, url, tag)

    def _ctl(self, *argv: str) -> str:
        return subprocess.run(
            ["rabbitmqctl", "-q", *argv], check=True, capture_output=True, text=True, timeout=60
        ).stdout

    def cut(self, target: Target, pids: list[int]) -> str:  # type: ignore[override]
        names = [
            line.split("\t")[0]
            for line in self._ctl("list_connections", "name", "client_properties").splitlines()
            if target.tag in line
        ]
        for name in names:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ctl("close_connection", name, "chaos: server closed the connection")
        return f"rabbitmqctl close_connection on {len(names)} connections"

    def remove(self, target: Target) -> None:
        for line in self._ctl("list_queues", "name").splitlines():
            if line.startswith(target.tag):
                self._ctl("delete_queue", line.strip())


#: Every queue the suite knows, in table order.
KINDS: dict[str, type[Backend]] = {
    "sqlite": SQLiteBackend,
    "sqs": SQSBackend,
    "postgres": PostgresBackend,
    "redis": RedisBackend,
    "rabbitmq": RabbitBackend,
    "nats": NatsBackend,
}
