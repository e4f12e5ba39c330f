"""Private servers for the chaos runs (on free 127.0.0.1 ports, in a temp dir), a TCP
forwarder, and network namespaces for "a consumer host cut off the network".

Every server here is started by the run and stopped by it; nothing touches the shared
servers except RabbitMQ's, where the run closes only its own connections.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} did not listen on {host}:{port}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Server:
    """One server process that can be restarted on the same port with the same data."""

    name = "server"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = (directory / f"{self.name}.log").open("ab")

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=self.log, stderr=subprocess.STDOUT, cwd=self.directory
        )
        wait_port("127.0.0.1", self.port, 30, self.process)

    def stop(self) -> None:
        stop(self.process)

    def restart(self, down: float = 1.0) -> None:
        self.stop()
        time.sleep(down)  # a real restart leaves clients without a server for a moment
        self.start()

    def close(self) -> None:
        self.stop()
        self.log.close()


class Moto(Server):
    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self) -> None:
        self.process = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_port("127.0.0.1", self.port, 60, self.process)


class Redis(Server):
    name = "redis"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.directory),
        ]


class Nats(Server):
    name = "nats"

    def command(self) -> list[str]:
        return [
            shutil.which("nats-server") or "nats-server",
            "-js",
            "-sd",
            str(self.directory / "js"),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Postgres(Server):
    """A cluster in the temp dir, run as the ``postgres`` user (initdb refuses root)."""

    name = "postgres"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.data = directory / "pgdata"
        if not self.data.exists():
            self._as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            )

    def _as_postgres(self, *argv: str) -> None:
        shutil.chown(self.directory, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, stdout=self.log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-o",
            options,
            "-l",
            str(self.directory / "pg.log"),
            "start",
        )
        if not getattr(self, "_created", False):
            self._as_postgres(
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "test",
            )
            self._created = True

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            )


class Forwarder:
    """TCP forwarder: listens on ``listen`` (a veth address) and relays to ``upstream``.

    Lets consumers in a network namespace reach a server on this machine's loopback; when
    their link goes down, their connections stall exactly as across a real network.
    """

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(listen, reuse_port=False)
        self.server.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.server, selectors.EVENT_READ, None)
        self.peers: dict[socket.socket, socket.socket] = {}
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="chaos-forwarder", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.server:
                    with contextlib.suppress(OSError):
                        client, _ = self.server.accept()
                        upstream = socket.create_connection(self.upstream, 5)
                        for one, other in ((client, upstream), (upstream, client)):
                            one.setblocking(True)
                            self.peers[one] = other
                            self.selector.register(one, selectors.EVENT_READ, None)
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        self.peers[sock].sendall(data)
                        continue
                except OSError:
                    pass
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        other = self.peers.pop(sock, None)
        for one in (sock, other):
            if one is None:
                continue
            self.peers.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(one)
            one.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        for sock in list(self.peers):
            self._drop(sock)
        self.server.close()


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def netns_unavailable() -> str | None:
    """None when this process can make network namespaces, else why not."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    name = f"chaos-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc).encode()
        return f"cannot create a network namespace: {detail.decode(errors='replace').strip()}"
    _ip("netns", "del", name)
    return None


class Host:
    """A consumer host: a network namespace joined to this one by a veth pair.

    Addresses are link-local 169.254.231.X/30 on links the run creates: the namespace side
    reaches only the root-side address, where a :class:`Forwarder` listens.
    """

    def __init__(self, index: int) -> None:
        self.name = f"chaos-{os.getpid()}-{index}"
        self.outside = f"cx{os.getpid() % 100000}o{index}"
        inside = f"cx{os.getpid() % 100000}i{index}"
        base = 4 * index
        self.address = f"169.254.231.{base + 1}"  # the root side: what consumers connect to
        self.inner = f"169.254.231.{base + 2}"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", self.name)
            _ip("addr", "add", f"{self.address}/30", "dev", self.outside)
            _ip("link", "set", self.outside, "up")
            for argv in (
                ("addr", "add", f"{self.inner}/30", "dev", inside),
                ("link", "set", inside, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("-n", self.name, *argv)
        except BaseException:
            self.close()
            raise

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def link(self, up: bool) -> None:
        _ip("link", "set", self.outside, "up" if up else "down")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.outside)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", self.name)


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    made: list[Host] = []
    try:
        for index in range(count):
            made.append(Host(index))
        yield made
    finally:
        for host in made:
            host.close()
