"""A real SQS endpoint for tests: moto's server in its own process on a free 127.0.0.1 port.

Nothing of boto3 is patched: clients talk HTTP to the server. Fixtures:

- ``moto_endpoint`` (session): the server's URL, started once per test session.
- ``sqs_env``: environment for boto3 (fake credentials, region, ``AWS_ENDPOINT_URL_SQS``).
- ``sqs_client``: a boto3 SQS client for setting up and inspecting queues.
- ``make_queue``: ``make_queue(fifo=False, **attributes) -> queue URL``, a fresh queue each call.

moto's server is not SQS: ReceiveMessage scans the whole queue (slow for big queues) and
concurrent deletes may be lost (a deleted message comes back), so tests assert that nothing
is lost and report duplicates rather than assert exactly-once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server", reason="moto[server] is needed for the SQS tests")

REGION = "us-east-1"
ACCOUNT = "123456789012"

_START_TIMEOUT = 60.0  # seconds; a loaded 2-core machine imports moto slowly


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aws_environment(endpoint: str) -> dict[str, str]:
    """What a process needs to reach the moto server through boto3's standard chain."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_SQS": endpoint,
        # Keep a developer's own ~/.aws out of the tests.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _start(port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    # Output to a file, never a pipe: werkzeug logs every request, and a pipe nobody
    # reads fills up after a few hundred requests and freezes the server.
    return subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(process: subprocess.Popen[bytes], endpoint: str, log: IO[bytes]) -> None:
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"moto server exited with {process.returncode}: {output[-2000:]}")
        try:
            client.list_queues()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start moto's server once for the session; yield its URL."""
    last: Exception | None = None
    for attempt in range(3):  # a free port can be taken between the probe and the bind
        port = _free_port()
        log = (tmp_path_factory.getbasetemp() / f"moto-{attempt}.log").open("w+b")
        process = _start(port, log)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(process, endpoint, log)
        except RuntimeError as exc:
            last = exc
            log.close()
            continue
        except BaseException:
            process.kill()
            process.wait()
            raise
        try:
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        return
    raise RuntimeError(f"could not start the moto server: {last}")


@pytest.fixture
def sqs_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3's standard chain (env vars) at the moto server for one test."""
    env = aws_environment(moto_endpoint)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return env


@pytest.fixture
def sqs_client(sqs_env: dict[str, str]) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def make_queue(sqs_client: Any) -> Callable[..., str]:
    """Create a fresh, uniquely named queue; return its URL."""

    def make(fifo: bool = False, name: str | None = None, **attributes: Any) -> str:
        name = name or f"q-{uuid.uuid4().hex[:12]}"
        attrs = {key: str(value) for key, value in attributes.items()}
        if fifo:
            name += ".fifo"
            attrs.setdefault("FifoQueue", "true")
        return str(sqs_client.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"])

    return make


def drain(client: Any, queue_url: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Receive (without deleting) everything visible; for checking what is left."""
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=60,
            AttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            seen[message["MessageId"]] = message
    return list(seen.values())


def queue_counts(client: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS reports them."""
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )
