"""``from_url``: every accepted form, and clear errors for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from queue_consumer.adapters.sqs import FixedDelay, SQSQueue, from_url
from queue_consumer.adapters.sqs._url import parse_url
from queue_consumer.errors import ConfigurationError

MakeQueue = Callable[..., str]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqs://jobs", {"queue_name": "jobs"}),
        (
            "sqs://jobs.fifo?region=eu-west-1&wait=5&visibility_timeout=60&max_messages=4",
            {
                "queue_name": "jobs.fifo",
                "region_name": "eu-west-1",
                "wait_time_seconds": 5,
                "visibility_timeout": 60,
                "max_messages": 4,
            },
        ),
        (
            "sqs://jobs?endpoint_url=http://localhost:4566&heartbeat=off&reject=immediate",
            {
                "queue_name": "jobs",
                "endpoint_url": "http://localhost:4566",
                "heartbeat": False,
                "reject_policy": "immediate",
            },
        ),
        (
            "sqs://jobs?max_receive_count=5&dead_letter_queue=jobs-dlq&reject=2.5",
            {
                "queue_name": "jobs",
                "max_receive_count": 5,
                "dead_letter_queue": "jobs-dlq",
                "reject_policy": 2.5,
            },
        ),
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
            {
                "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
                "region_name": "eu-west-1",
            },
        ),
        (
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs?wait=1",
            {
                "queue_url": "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs",
                "region_name": "cn-north-1",
                "wait_time_seconds": 1,
            },
        ),
        (
            "https://us-west-2.queue.amazonaws.com/123456789012/jobs",
            {
                "queue_url": "https://us-west-2.queue.amazonaws.com/123456789012/jobs",
                "region_name": "us-west-2",
            },
        ),
        (
            "http://127.0.0.1:5000/123456789012/jobs?region=us-east-1",
            {
                "queue_url": "http://127.0.0.1:5000/123456789012/jobs",
                "endpoint_url": "http://127.0.0.1:5000",
                "region_name": "us-east-1",
            },
        ),
    ],
)
def test_accepted_forms(url: str, expected: dict[str, Any]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sqs://", "no queue name"),
        ("sqs://bad%20name", "not a valid SQS queue name"),
        ("sqs://" + "x" * 81, "not a valid SQS queue name"),
        ("sqs://jobs/extra", "no path"),
        ("sqs://jobs?wait=30", "wait must be an integer from 0 to 20, not '30'"),
        ("sqs://jobs?wait=soon", "wait must be an integer from 0 to 20, not 'soon'"),
        ("sqs://jobs?heartbeat=maybe", "must be true or false"),
        ("sqs://jobs?colour=blue", "unknown option 'colour'"),
        ("sqs://jobs?wait=1&wait=2", "given twice"),
        ("sqs://jobs#frag", "fragment"),
        ("redis://jobs", "scheme 'redis'"),
        ("https://sqs.eu-west-1.amazonaws.com/jobs", "ACCOUNT_ID/QUEUE_NAME"),
        ("https://sqs.eu-west-1.amazonaws.com/abc/jobs", "ACCOUNT_ID/QUEUE_NAME"),
        ("http://127.0.0.1:port/1/jobs", "Port"),
        ("http://127.0.0.1:5000/1/jobs?endpoint_url=http://x", "its endpoint"),
    ],
)
def test_bad_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        from_url(url)
    assert why in str(raised.value)


def test_max_attempts_on_sqs_is_a_deprecated_name_for_request_attempts() -> None:
    """max_attempts means deliveries on every other queue; here it meant botocore's."""
    with pytest.warns(DeprecationWarning, match="request_attempts"):
        assert parse_url("sqs://jobs?max_attempts=3")["request_attempts"] == 3
    assert parse_url("sqs://jobs?request_attempts=4")["request_attempts"] == 4


def test_from_url_with_a_moto_queue_url(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_queue(VisibilityTimeout=7)
    # The queue URL alone says where the server is: no endpoint from the environment.
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS")
    queue = from_url(f"{url}?region=us-east-1&wait=0&reject=0")
    with queue:
        assert isinstance(queue, SQSQueue)
        assert queue.queue_url == url
        assert queue.wait_time_seconds == 0
        assert queue.reject_policy == FixedDelay(0)
        assert queue.put("via url")
        assert [m.body for m in queue.get()] == ["via url"]


def test_from_url_sqs_scheme_by_name(make_queue: MakeQueue, sqs_env: dict[str, str]) -> None:
    url = make_queue()
    name = url.rsplit("/", 1)[1]
    endpoint = sqs_env["AWS_ENDPOINT_URL_SQS"]
    with from_url(f"sqs://{name}?endpoint_url={endpoint}&region=us-east-1&wait=0") as queue:
        assert queue.queue_url == url
        assert queue.get() == []


def test_from_url_unknown_queue(sqs_env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        from_url("sqs://missing-queue?wait=0")


def test_open_queue_routes_sqs_urls(make_queue: MakeQueue) -> None:
    urls = pytest.importorskip("queue_consumer._urls")
    name = make_queue().rsplit("/", 1)[1]
    queue = urls.open_queue(f"sqs://{name}?wait=0")
    with queue:
        assert isinstance(queue, SQSQueue)
