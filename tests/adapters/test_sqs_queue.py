"""SQSQueue against a real SQS endpoint (moto's server over HTTP): get and settle."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from queue_consumer.adapters.sqs import (
    ExponentialBackoff,
    FixedDelay,
    SQSBatchError,
    SQSMessage,
    SQSQueue,
)
from queue_consumer.errors import ConfigurationError, ConsumerStateError

if __package__:
    from .sqs_server import drain, queue_counts
else:
    from sqs_server import drain, queue_counts

MakeQueue = Callable[..., str]


def fill(client: Any, url: str, bodies: list[str], **extra: Any) -> None:
    for start in range(0, len(bodies), 10):
        client.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": body, **extra}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )


def receive_all(queue: SQSQueue, expected: int, rounds: int = 20) -> list[SQSMessage]:
    messages: list[SQSMessage] = []
    for _ in range(rounds):
        messages += queue.get()
        if len(messages) >= expected:
            break
    return messages


def test_get_returns_picklable_frozen_messages(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue()
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody="hello",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}},
    )
    with SQSQueue(queue_url=url, wait_time_seconds=1) as queue:
        [message] = receive_all(queue, 1)
        assert message.body == "hello"
        assert message.receive_count == 1
        assert message.group_id is None
        assert message.attribute("kind") == "greeting"
        assert message.sent_timestamp is not None
        assert pickle.loads(pickle.dumps(message)) == message
        with pytest.raises(AttributeError):
            message.body = "changed"  # type: ignore[misc]
        assert queue.statistics().held == 1
        assert queue.message_group(message) is None


def test_by_name_through_the_standard_chain(make_queue: MakeQueue, sqs_client: Any) -> None:
    # Only AWS_ENDPOINT_URL_SQS and friends in the environment: nothing passed explicitly.
    url = make_queue()
    name = url.rsplit("/", 1)[1]
    with SQSQueue(name, wait_time_seconds=0) as queue:
        assert queue.queue_url == url
        assert queue.put("one", color="red", size=3) != ""
        [message] = receive_all(queue, 1)
        assert message.body == "one"
        assert message.attribute("color") == "red"
        assert message.message_attributes["size"]["DataType"] == "Number"


def test_unknown_queue_name_is_a_configuration_error(sqs_env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SQSQueue("no-such-queue-here")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of queue_name and queue_url"),
        ({"queue_name": "a", "queue_url": "http://h/1/a"}, "exactly one"),
        ({"queue_name": "a", "wait_time_seconds": 21}, "wait_time_seconds"),
        ({"queue_name": "a", "max_messages": 0}, "max_messages"),
        ({"queue_name": "a", "heartbeat_fraction": 1.0}, "heartbeat_fraction"),
        ({"queue_name": "a", "max_receive_count": 3}, "go together"),
        ({"queue_name": "a", "retry_mode": "eager"}, "retry_mode"),
        ({"queue_name": "a", "reject_policy": "later"}, "reject_policy"),
        ({"queue_name": "a", "reject_policy": -1}, "reject delay"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SQSQueue(**kwargs)


def test_cleanup_deletes_in_batches_of_ten(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue()
    fill(sqs_client, url, [f"m{i}" for i in range(25)])
    calls: list[int] = []
    client = CountingClient(sqs_client, calls)
    with SQSQueue(queue_url=url, client=client, wait_time_seconds=0) as queue:
        messages = receive_all(queue, 25, rounds=40)
        assert len({m.message_id for m in messages}) == 25
        queue.cleanup(messages)
        assert calls == [10, 10, 5]
        assert queue.statistics().deleted == 25
        assert queue.statistics().held == 0
    assert drain(sqs_client, url) == []


def test_partial_delete_failure_is_retried(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue()
    fill(sqs_client, url, [f"m{i}" for i in range(12)])
    client = FlakyDeleteClient(sqs_client, fail_first=3)
    with SQSQueue(queue_url=url, client=client, wait_time_seconds=0) as queue:
        messages = receive_all(queue, 12, rounds=40)
        queue.cleanup(messages)
        stats = queue.statistics()
    assert client.failed == 3
    assert stats.deleted == 12
    assert stats.retried_entries == 3
    assert stats.failed_entries == 0
    assert drain(sqs_client, url) == []


def test_persistent_delete_failure_is_logged_counted_and_raised(
    make_queue: MakeQueue, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_queue()
    fill(sqs_client, url, ["a", "b"])
    client = FlakyDeleteClient(sqs_client, fail_first=10**6)
    with SQSQueue(queue_url=url, client=client, wait_time_seconds=0) as queue:
        messages = receive_all(queue, 2)
        with pytest.raises(SQSBatchError) as raised:
            queue.cleanup(messages)
        stats = queue.statistics()
    assert {m.message_id for m, _ in raised.value.failed} == {m.message_id for m in messages}
    assert stats.failed_entries == 2
    assert stats.deleted == 0
    assert "delete failed for 2 message(s)" in caplog.text
    assert queue_counts(sqs_client, url) == (0, 2)  # still there: delivered again, never lost


def test_expired_receipt_is_logged_not_fatal(
    make_queue: MakeQueue, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_queue()
    with SQSQueue(queue_url=url, wait_time_seconds=0) as queue:
        stale = SQSMessage(message_id="x", receipt_handle="not-a-receipt", body="")
        with caplog.at_level(logging.WARNING):
            queue.cleanup([stale])
            queue.release([stale])
        assert queue.statistics().invalid_receipts == 2
    assert "no longer valid" in caplog.text


def test_release_makes_messages_visible_at_once(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=600)
    fill(sqs_client, url, ["a", "b", "c"])
    with SQSQueue(queue_url=url, wait_time_seconds=0) as queue:
        messages = receive_all(queue, 3)
        assert queue.get() == []  # invisible for 10 minutes
        queue.release(messages)
        again = receive_all(queue, 3)
        assert sorted(m.body for m in again) == ["a", "b", "c"]
        assert all(m.receive_count == 2 for m in again)
        assert queue.statistics().released == 3
        queue.cleanup(again)


def test_reject_immediate_and_with_backoff(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=600)
    fill(sqs_client, url, ["a"])
    with SQSQueue(queue_url=url, wait_time_seconds=0, reject_policy="immediate") as queue:
        first = receive_all(queue, 1)
        queue.reject(first)
        [second] = receive_all(queue, 1)
        assert second.receive_count == 2
        # A long backoff hides the message: not back on the next polls.
        queue.reject_policy = FixedDelay(300)
        queue.reject([second])
        assert queue.get() == []
        assert queue_counts(sqs_client, url) == (0, 1)
        assert queue.statistics().rejected == 2


def test_backoff_policies() -> None:
    policy = ExponentialBackoff(base=2, cap=30, jitter=False)
    assert [policy(n) for n in (1, 2, 3, 4, 5, 100)] == [2, 4, 8, 16, 30, 30]
    jittered = ExponentialBackoff(base=2, cap=30)
    assert all(0 <= jittered(4) <= 16 for _ in range(100))
    assert FixedDelay(0)(7) == 0


def test_reject_policy_callable(make_queue: MakeQueue, sqs_client: Any) -> None:
    seen: list[int] = []

    def policy(receive_count: int) -> float:
        seen.append(receive_count)
        return 0

    url = make_queue(VisibilityTimeout=600)
    fill(sqs_client, url, ["a"])
    with SQSQueue(queue_url=url, wait_time_seconds=0, reject_policy=policy) as queue:
        queue.reject(receive_all(queue, 1))
        queue.reject(receive_all(queue, 1))
        queue.cleanup(receive_all(queue, 1))
    assert seen == [1, 2]


def test_dead_letter_queue_routing(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=600)
    dlq = make_queue()
    sqs_client.send_message(
        QueueUrl=url,
        MessageBody="poison",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "bad"}},
    )
    dlq_name = dlq.rsplit("/", 1)[1]
    with SQSQueue(
        queue_url=url,
        wait_time_seconds=0,
        reject_policy=0,
        max_receive_count=2,
        dead_letter_queue=dlq_name,
    ) as queue:
        queue.reject(receive_all(queue, 1))  # receive 1: back to the queue
        [message] = receive_all(queue, 1)
        assert message.receive_count == 2
        queue.reject([message])  # receive 2 >= 2: to the dead-letter queue
        assert queue.get() == []
        assert queue.statistics().dead_lettered == 1
    [dead] = sqs_client.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert dead["Body"] == "poison"
    assert dead["MessageAttributes"]["kind"]["StringValue"] == "bad"
    assert queue_counts(sqs_client, url) == (0, 0)


def test_fifo_message_group(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(fifo=True, ContentBasedDeduplication="true")
    with SQSQueue(queue_url=url, wait_time_seconds=0) as queue:
        assert queue.fifo
        queue.put_many(["a1", "a2"], group_id="a")
        queue.put("b1", group_id="b")
        messages = receive_all(queue, 3)
        groups = {m.body: queue.message_group(m) for m in messages}
        assert groups == {"a1": "a", "a2": "a", "b1": "b"}
        assert [m.body for m in messages if m.group_id == "a"] == ["a1", "a2"]
        queue.cleanup(messages)


def test_put_many_and_stats(make_queue: MakeQueue, sqs_client: Any) -> None:
    url = make_queue(VisibilityTimeout=600)
    with SQSQueue(queue_url=url, wait_time_seconds=0) as queue:
        ids = queue.put_many(f"m{i}" for i in range(23))
        assert len(set(ids)) == 23
        assert queue.stats()["ApproximateNumberOfMessages"] == 23
        got = queue.get()
        stats = queue.stats()
        assert stats["ApproximateNumberOfMessagesNotVisible"] == len(got)
        assert stats["ApproximateNumberOfMessages"] == 23 - len(got)
        assert stats["ApproximateNumberOfMessagesDelayed"] == 0
        # The keys every queue's stats() has, for `queue-consumer stats`, metrics, health.
        assert (stats["depth"], stats["in_flight"]) == (23 - len(got), len(got))
        assert stats["dead_letters"] is None  # SQS's own redrive policy: not ours to count


def test_dead_letter_sends_a_permanent_failure_at_once(
    make_queue: MakeQueue, sqs_client: Any
) -> None:
    url = make_queue(VisibilityTimeout=600)
    dlq = make_queue()
    sqs_client.send_message(QueueUrl=url, MessageBody="poison")
    with SQSQueue(
        queue_url=url,
        wait_time_seconds=0,
        max_receive_count=5,
        dead_letter_queue=dlq.rsplit("/", 1)[1],
    ) as queue:
        [message] = receive_all(queue, 1)
        queue.dead_letter([message], error="PermanentFailure: bad")  # receive 1 of 5
        assert queue.statistics().dead_lettered == 1
        assert queue.stats()["dead_letters"] == 1
    [dead] = sqs_client.receive_message(QueueUrl=dlq)["Messages"]
    assert dead["Body"] == "poison"
    assert queue_counts(sqs_client, url) == (0, 0)


def test_get_after_close_is_an_error(make_queue: MakeQueue) -> None:
    queue = SQSQueue(queue_url=make_queue(), wait_time_seconds=0)
    queue.close()
    queue.close()  # idempotent
    with pytest.raises(ConsumerStateError, match="closed"):
        queue.get()


def test_get_errors_are_counted_and_raised(sqs_env: dict[str, str]) -> None:
    # A server that does not answer: botocore retries, then the error reaches the core.
    queue = SQSQueue(
        queue_url="http://127.0.0.1:9/123456789012/nowhere",
        endpoint_url="http://127.0.0.1:9",
        wait_time_seconds=0,
        heartbeat=False,
        request_attempts=2,
    )
    with pytest.raises(Exception, match="Could not connect"):
        queue.get()
    assert queue.statistics().api_errors == 1


def test_missing_boto3_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "try:\n"
        "    import queue_consumer.adapters.sqs\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install queue-consumer[sqs]" in result.stdout


# -- wrapper clients: a real client underneath, some behaviour on top ------------------


class CountingClient:
    def __init__(self, client: Any, calls: list[int]) -> None:
        self._client = client
        self._calls = calls

    def delete_message_batch(self, **kwargs: Any) -> Any:
        self._calls.append(len(kwargs["Entries"]))
        return self._client.delete_message_batch(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FlakyDeleteClient:
    """Fails the first ``fail_first`` delete entries as SQS does (SenderFault false)."""

    def __init__(self, client: Any, fail_first: int) -> None:
        self._client = client
        self._budget = fail_first
        self.failed = 0

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        failing = Entries[: self._budget]
        self._budget -= len(failing)
        self.failed += len(failing)
        passing = Entries[len(failing) :]
        response: dict[str, Any] = {"Successful": [], "Failed": []}
        if passing:
            response = dict(self._client.delete_message_batch(QueueUrl=QueueUrl, Entries=passing))
        response["Failed"] = list(response.get("Failed", [])) + [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "boom"}
            for e in failing
        ]
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_dead_lettering_that_fails_rejects_instead(
    make_queue: MakeQueue, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_queue(VisibilityTimeout=600)
    missing_dlq = url.rsplit("/", 1)[0] + "/no-such-dlq"
    sqs_client.send_message(QueueUrl=url, MessageBody="poison")
    with SQSQueue(
        queue_url=url,
        wait_time_seconds=0,
        reject_policy=0,
        max_receive_count=1,
        dead_letter_queue=missing_dlq,
        settle_attempts=2,
    ) as queue:
        queue.reject(receive_all(queue, 1))
        stats = queue.statistics()
        assert stats.dead_lettered == 0
        assert stats.rejected == 1
        [again] = receive_all(queue, 1)  # not lost: back in the source queue
        assert again.body == "poison"
        queue.cleanup([again])
    assert "could not dead-letter 1 message(s)" in caplog.text


def test_put_takes_the_bodies_sqlite_takes_and_get_returns_them_as_put(
    make_queue: MakeQueue, sqs_client: Any
) -> None:
    url = make_queue(VisibilityTimeout=600)
    dlq = make_queue()
    bodies: list[Any] = ["text", b"\x00\xffraw", {"n": 1, "s": "é"}, [1, 2], 7, None]
    with SQSQueue(
        queue_url=url,
        wait_time_seconds=0,
        message_attribute_names=["other"],  # the body's kind is asked for all the same
        max_receive_count=1,
        dead_letter_queue=dlq,
    ) as queue:
        queue.put(bodies[0])
        queue.put(bodies[1])
        queue.put_many(bodies[2:])
        got = receive_all(queue, len(bodies))
        assert sorted(map(repr, (m.body for m in got))) == sorted(map(repr, bodies))
        # A str is plain text on the wire (no attribute): other consumers read it as is.
        [text] = [m for m in got if m.body == "text"]
        assert text.attribute("queue_consumer.body") is None
        with pytest.raises(TypeError, match="cannot put a body of type object"):
            queue.put(object())
        # Dead-lettered, a body keeps its kind: the dead-letter queue holds it as it was put.
        queue.reject([m for m in got if m.body == b"\x00\xffraw"])
    with SQSQueue(queue_url=dlq, wait_time_seconds=0) as dead_letters:
        [dead] = receive_all(dead_letters, 1)
        assert dead.body == b"\x00\xffraw"


def test_group_id_on_a_standard_queue_is_an_error(make_queue: MakeQueue) -> None:
    with (
        SQSQueue(queue_url=make_queue(), wait_time_seconds=0) as queue,
        pytest.raises(ConfigurationError, match="group_id is for FIFO queues"),
    ):
        queue.put("x", group_id="g")
