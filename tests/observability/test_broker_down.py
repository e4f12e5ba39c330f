"""A broker that refuses connections (a private moto server, stopped): not ready, still live."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from queue_consumer import Consumer
from queue_consumer.observability.health import HealthHooks
from queue_consumer.testing import wait_until

sqs_server = pytest.importorskip("sqs_server")


def _noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def test_broker_down_is_not_ready_but_live(sqs_env: dict[str, str]) -> None:
    from queue_consumer.adapters.sqs import SQSQueue

    port = sqs_server._free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = sqs_server._start(port, log)
        try:
            sqs_server._wait_ready(server, endpoint, log)
            client = sqs_server.boto3.client("sqs", endpoint_url=endpoint)
            url = client.create_queue(QueueName="down")["QueueUrl"]
            with SQSQueue(
                queue_url=url, endpoint_url=endpoint, wait_time_seconds=1, request_attempts=1
            ) as queue:
                consumer = Consumer(queue, _noop, max_workers=1, max_handlers=1)
                health = HealthHooks(stall_after=None).bind(consumer)
                with consumer:
                    consumer.supervise(polling_time=0.1)
                    wait_until(lambda: health.check().ready, timeout=30)
                    server.terminate()
                    server.wait(10)
                    wait_until(lambda: not health.check().ready, timeout=30)
                    verdict = health.check()
                    assert verdict.live, verdict
                    assert verdict.reason.startswith("get() is failing"), verdict
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
