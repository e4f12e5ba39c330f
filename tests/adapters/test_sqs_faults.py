"""A flaky network between the consumer and SQS: 5xx, throttling and dropped connections.

A small HTTP proxy in front of moto's server injects faults at random. botocore's retries
(standard mode) absorb them; the adapter counts them; nothing is lost.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from queue_consumer import Consumer
from queue_consumer.adapters.sqs import SQSMessage, SQSQueue
from queue_consumer.testing import wait_until

if __package__:
    from .sqs_server import queue_counts
else:
    from sqs_server import queue_counts

MakeQueue = Callable[..., str]

FAULTS = ("503", "throttle", "drop_before", "drop_after")


class FaultyProxy:
    """Forwards requests to ``upstream``; ``rate`` of them meet one of ``FAULTS``."""

    def __init__(self, upstream: str, rate: float, seed: int = 11) -> None:
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.forwarded = 0
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy.pick()
                if fault == "drop_before":  # never reaches SQS: the connection just dies
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("503", "throttle"):
                    status, code = (
                        (503, "ServiceUnavailable")
                        if fault == "503"
                        else (
                            400,
                            "ThrottlingException",
                        )
                    )
                    self.reply(status, json.dumps({"__type": code, "message": fault}).encode())
                    return
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream_conn.request("POST", self.path, body=body, headers=headers)
                    response = upstream_conn.getresponse()
                    payload = response.read()
                finally:
                    upstream_conn.close()
                with proxy.lock:
                    proxy.forwarded += 1
                if fault == "drop_after":  # SQS did it, the answer is lost (at-least-once)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.reply(response.status, payload, response.getheader("Content-Type"))

            def reply(self, status: int, payload: bytes, content_type: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest would show every request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def pick(self) -> str | None:
        with self.lock:
            if self.random.random() >= self.rate:
                return None
            fault = self.random.choice(FAULTS)
            self.injected[fault] += 1
            return fault

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def faulty_proxy(sqs_env: dict[str, str]) -> Iterator[FaultyProxy]:
    with FaultyProxy(sqs_env["AWS_ENDPOINT_URL_SQS"], rate=0.2) as proxy:
        yield proxy


def test_faults_are_retried_counted_and_lose_nothing(
    make_queue: MakeQueue, sqs_client: Any, faulty_proxy: FaultyProxy
) -> None:
    url = make_queue(VisibilityTimeout=2)  # what a lost answer held comes back soon
    bodies = [f"f{i:03d}" for i in range(200)]
    for start in range(0, len(bodies), 10):
        sqs_client.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:][:10])],
        )
    handled: list[str] = []
    lock = threading.Lock()

    def handler(messages: Iterator[SQSMessage]) -> None:
        for message in messages:
            with lock:
                handled.append(message.body)

    queue = SQSQueue(
        queue_url=url,
        endpoint_url=faulty_proxy.url,  # every request of the consumer goes through the faults
        wait_time_seconds=1,
        reject_policy=0,
        request_attempts=6,
    )
    with queue, Consumer(queue, handler, max_workers=3, max_handlers=6, messages_bulk_size=2):
        wait_until(lambda: set(handled) == set(bodies), timeout=100, message="all handled")
        wait_until(lambda: queue_counts(sqs_client, url) == (0, 0), timeout=60, message="empty")
    stats = queue.statistics()
    assert sum(faulty_proxy.injected.values()) > 10, faulty_proxy.injected
    assert all(faulty_proxy.injected.values()), faulty_proxy.injected  # every kind happened
    assert stats.sdk_retries > 0
    repeats = len(handled) - len(set(handled))
    print(f"\nfaults injected: {faulty_proxy.injected}; handled twice: {repeats}; {stats}")
