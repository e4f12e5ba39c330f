"""Every queue the project ships passes the same contract check (queue_consumer.testing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from queue_consumer import MemoryQueue
from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.testing import check_queue_contract


def test_memory_queue_conformance() -> None:
    queue = MemoryQueue(visibility_timeout=1.0)
    check_queue_contract(queue, queue.put_many)


def test_sqlite_queue_conformance(tmp_path: Path) -> None:
    # No heartbeat (on by default), as for SQS below: the check leaves messages alone to see
    # their lease expire.
    with SQLiteQueue(
        tmp_path / "q.db", visibility_timeout=1.0, retry_delay=0.0, heartbeat=False
    ) as queue:
        check_queue_contract(queue, queue.put_many)


def test_sqs_queue_conformance(make_queue: Callable[..., str], sqs_client: Any) -> None:
    from queue_consumer.adapters.sqs import SQSQueue

    url = make_queue(VisibilityTimeout=2)
    # No heartbeat: the check leaves two messages alone to see their lease expire, and the
    # heartbeat would (rightly) keep extending them.
    queue = SQSQueue(
        queue_url=url,
        client=sqs_client,
        wait_time_seconds=1,
        reject_policy="immediate",
        heartbeat=False,
    )
    try:
        # moto can lose one of two concurrent deletes: "nothing lost" is checked, not "once".
        # SQS counts every receive (a release too); moto honours a stale receipt handle.
        check_queue_contract(
            queue, queue.put_many, exactly_once=False, release_counts=True, fenced=False
        )
    finally:
        queue.close()


def test_redis_stream_queue_conformance() -> None:
    import uuid

    if __package__:
        from .redis_server import HOST, LOCAL, PORT, delete_stream, require_server
    else:
        from redis_server import HOST, LOCAL, PORT, delete_stream, require_server
    from queue_consumer.adapters.redis import RedisStreamQueue

    require_server("Redis", HOST, PORT)
    stream = f"qc-conformance-{uuid.uuid4().hex[:10]}"
    # No heartbeat, for the same reason as SQS: two messages are left alone to expire.
    queue = RedisStreamQueue(
        LOCAL,
        stream,
        block=0.2,
        claim_idle=1.0,
        heartbeat=False,
        retry_delay=0.0,
        reclaim_interval=0.1,
    )
    try:
        check_queue_contract(queue, queue.put_many)
    finally:
        queue.close()
        delete_stream(LOCAL, stream)


def test_rabbitmq_queue_conformance() -> None:
    # AMQP has no lease: LeaseLike stands in for its expiry (tests/adapters/rabbitmq_server).
    if __package__:
        from .rabbitmq_server import LeaseLike, RabbitMQQueue, server_url, unique
    else:
        from rabbitmq_server import LeaseLike, RabbitMQQueue, server_url, unique

    queue = RabbitMQQueue(server_url(), unique(), retry_delay=0.05, wait_time=0.2, max_attempts=20)
    try:
        lease_like = LeaseLike(queue)
        # A classic queue's redelivered flag counts a release as one more delivery.
        check_queue_contract(lease_like, lease_like.put, release_counts=True)
    finally:
        queue.delete()
        queue.close()


def test_postgres_queue_conformance() -> None:
    if __package__:
        from .postgres_helpers import HOST, PORT, SERVER, Database, require_server
    else:
        from postgres_helpers import HOST, PORT, SERVER, Database, require_server

    require_server("PostgreSQL", HOST, PORT)
    database = Database(SERVER)  # a schema of its own, dropped at the end
    try:
        # No heartbeat, for the same reason as SQS: two messages are left alone to expire.
        queue = database.queue(
            visibility_timeout=1.0, retry_delay=0.0, heartbeat=False, wait_time=0.2
        )
        check_queue_contract(queue, queue.put_many)
    finally:
        database.drop()


def test_nats_jetstream_queue_conformance() -> None:
    pytest.importorskip("nats", reason="the [nats] extra (nats-py) is not installed")
    if __package__:
        from .nats_server import HOST, PORT, SHARED, delete_streams, require_server, unique
    else:
        from nats_server import HOST, PORT, SHARED, delete_streams, require_server, unique
    from queue_consumer.adapters.nats import JetStreamQueue

    require_server("NATS", HOST, PORT)
    # A new stream; no heartbeat (as for SQS); short backoffs so rejected messages return.
    queue = JetStreamQueue(
        unique(),
        servers=SHARED,
        ack_wait=2,
        wait_time=0.5,
        heartbeat=False,
        retry_delay=0.05,
        max_retry_delay=0.2,
        max_attempts=50,
    )
    try:
        # JetStream counts a release as a delivery; late settles are fenced by the adapter.
        check_queue_contract(queue, queue.put_many, timeout=30, release_counts=True)
    finally:
        queue.close()
        delete_streams(SHARED, [queue.stream, f"{queue.stream}_DEAD"])
