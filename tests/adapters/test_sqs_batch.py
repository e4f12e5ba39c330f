"""The batch helper: groups of ten, and a verdict for every entry (no SQS needed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from queue_consumer.adapters.sqs import SQSMessage, SQSQueue
from queue_consumer.adapters.sqs._batch import run_batches


def entry(item: int) -> dict[str, Any]:
    return {"ReceiptHandle": f"r{item}"}


class Script:
    """A fake batch call: answers from a per-attempt plan; records what it was sent."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.sent: list[list[str]] = []

    def __call__(self, entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        self.sent.append([e["ReceiptHandle"] for e in entries])
        return self.plan(len(self.sent), entries)  # type: ignore[no-any-return]


def test_groups_of_ten_all_succeed() -> None:
    call = Script(lambda n, es: {"Successful": [{"Id": e["Id"]} for e in es]})
    outcome = run_batches(call, list(range(23)), entry, sleep=lambda s: None)
    assert [len(batch) for batch in call.sent] == [10, 10, 3]
    assert sorted(item for item, _ in outcome.succeeded) == list(range(23))
    assert not (outcome.failed or outcome.refused or outcome.gone)


def test_every_kind_of_failure_gets_its_verdict() -> None:
    def plan(n: int, entries: list[dict[str, Any]]) -> Mapping[str, Any]:
        if n == 1:
            raise ConnectionError("down")  # the whole call: retried
        by_handle = {e["ReceiptHandle"]: e["Id"] for e in entries}
        answer: dict[str, list[dict[str, Any]]] = {"Successful": [], "Failed": []}
        for handle, id_ in by_handle.items():
            if handle == "r0":
                answer["Failed"].append(
                    {"Id": id_, "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}
                )
            elif handle == "r1":
                answer["Failed"].append(
                    {"Id": id_, "SenderFault": True, "Code": "InvalidParameterValue"}
                )
            elif handle == "r2":
                answer["Failed"].append({"Id": id_, "SenderFault": False, "Code": "InternalError"})
            elif handle == "r3" and n == 2:
                continue  # not answered at all: sent again
            else:
                answer["Successful"].append({"Id": id_})
        return answer

    slept: list[float] = []
    outcome = run_batches(Script(plan), [0, 1, 2, 3, 4], entry, attempts=3, sleep=slept.append)
    assert [item for item, _ in outcome.gone] == [0]
    assert [item for item, _ in outcome.refused] == [1]
    assert [item for item, _ in outcome.failed] == [2]  # server's fault every time
    assert sorted(item for item, _ in outcome.succeeded) == [3, 4]
    assert outcome.call_errors == 1
    assert len(slept) == 2  # a backoff before each retry round


class RetriedClient:
    """Looks like a client whose every call botocore had to retry twice."""

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        message = {"MessageId": "1", "ReceiptHandle": "r", "Body": "b", "Attributes": {}}
        return {"Messages": [message], "ResponseMetadata": {"RetryAttempts": 2}}

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        successful = [{"Id": e["Id"]} for e in kwargs["Entries"]]
        return {"Successful": successful, "ResponseMetadata": {"RetryAttempts": 1}}


def test_botocore_retries_are_counted() -> None:
    with SQSQueue(
        queue_url="https://sqs.eu-west-1.amazonaws.com/1/q", client=RetriedClient(), heartbeat=False
    ) as queue:
        [message] = queue.get()
        assert isinstance(message, SQSMessage)
        queue.release([message])
        stats = queue.statistics()
    assert stats.sdk_retries == 3
    assert stats.released == 1
