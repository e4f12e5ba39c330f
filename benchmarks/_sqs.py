"""SQS on a moto server: the server's lifetime, queues filled in small rounds, checks at the end.

moto 5.2's server is slow in ways a benchmark must route around, not measure:

- ReceiveMessage and DeleteMessage scan the whole queue (several times per received
  message), so a queue holding thousands of messages serves a few per second. A run
  therefore spreads its N messages over *rounds*: many queues of 10, filled before the
  clock starts, consumed one after another (``RoundsQueue.get`` moves on once a round was
  received), so every runner pays moto the same: one receive and one delete batch per 10.
- Concurrent DeleteMessage calls can lose a delete (moto rebuilds its message list
  unlocked): the deleted message comes back after its visibility timeout. Such a message
  was already handled and cleaned up, so it is not the runner's duplicate: ``finish``
  waits for it, deletes it and counts it as ``moto lost deletes``. Only a message that
  was never cleaned up fails a run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PER_QUEUE = 10  # messages per round: one receive takes a round, moto's scans stay short
VISIBILITY = 5  # seconds: a message moto lost the delete of comes back this soon


@contextlib.contextmanager
def moto_server() -> Iterator[dict[str, Any]]:
    """A moto server in its own process on a free port; yields what trials need to reach it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the moto server did not start")
            time.sleep(0.1)
        yield {"endpoint": f"http://127.0.0.1:{port}", "moto_pid": process.pid}
    finally:
        process.terminate()
        process.wait(10)


def client(endpoint: str, connections: int = 100) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=connections, retries={"mode": "standard"}),
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (from /proc, no psutil)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RoundsQueue:
    """Minimal boto3 queue over rounds of small SQS queues: receive 10, delete in a batch.

    Message bodies are the integers 0..n-1; ``cleanup`` ticks them off a checklist and
    sets ``done`` (stamping ``finished_at``) when every one was cleaned up at least once.
    """

    def __init__(self, sqs: Any, n: int, moto_pid: int) -> None:
        self.sqs = sqs
        self.moto_pid = moto_pid
        self.moto_cpu = 0.0  #: moto's CPU seconds until ``done`` (from ``start_clock``)
        self.n = n
        self.urls: list[str] = []
        self.done = threading.Event()
        self.finished_at = 0.0
        self.delete_failures = 0
        self._cleaned = bytearray(n)
        self._unique = 0
        self._cursor = 0
        self._sizes: list[int] = []
        self._received: list[int] = []
        self._lock = threading.Lock()
        self.requests = 0  #: HTTP requests to SQS from start_clock() to done
        self._requests_at_start = 0
        self._sent = 0
        sqs.meta.events.register("before-send.sqs", self._count_request)

    def _count_request(self, **kwargs: Any) -> None:
        self._sent += 1  # under the GIL; an off-by-one under a race does not matter here

    def fill(self) -> None:
        """Create the round queues and send every message (before the clock starts)."""
        run = uuid.uuid4().hex[:8]
        rounds = range(0, self.n, PER_QUEUE)

        def make(start: int) -> str:
            url: str = self.sqs.create_queue(
                QueueName=f"bench-{run}-{start}",
                Attributes={"VisibilityTimeout": str(VISIBILITY)},
            )["QueueUrl"]
            for first in range(start, min(start + PER_QUEUE, self.n), 10):
                entries = [
                    {"Id": str(i), "MessageBody": str(i)}
                    for i in range(first, min(first + 10, self.n))
                ]
                self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
            return url

        with ThreadPoolExecutor(4) as executor:
            self.urls = list(executor.map(make, rounds))
        self._sizes = [min(PER_QUEUE, self.n - start) for start in rounds]
        self._received = [0] * len(self._sizes)

    def get(self) -> list[dict[str, Any]]:
        while True:
            index = self._cursor
            if index >= len(self.urls):
                return []
            messages = self._receive(index)
            with self._lock:
                self._received[index] += len(messages or ())
                # On to the next round once this one was all received (or had nothing
                # visible left): no empty receive per round, and no round is drained by
                # two concurrent deletes, the case in which moto loses one.
                if self._cursor == index and (
                    not messages or self._received[index] >= self._sizes[index]
                ):
                    self._cursor = index + 1
            if messages:
                return messages

    @property
    def exhausted(self) -> bool:
        """Every round was received (a message moto brings back later is not fetched again)."""
        return self._cursor >= len(self.urls)

    def _receive(self, index: int) -> list[Any]:
        messages: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=self.urls[index], MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        for message in messages:
            message["round"] = index
        return messages

    def cleanup(self, messages: list[dict[str, Any]]) -> None:
        rounds: dict[int, list[dict[str, Any]]] = {}
        for message in messages:
            rounds.setdefault(message["round"], []).append(message)
        for index, batch in rounds.items():
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ]
            failed = self.sqs.delete_message_batch(QueueUrl=self.urls[index], Entries=entries).get(
                "Failed", []
            )
            if failed:  # left in the queue: it comes back and is deleted by finish()
                self.delete_failures += len(failed)
                gone = {int(entry["Id"]) for entry in failed}
                batch = [m for i, m in enumerate(batch) if i not in gone]
            self._tick(int(m["Body"]) for m in batch)

    def close(self) -> None:
        pass

    def _tick(self, bodies: Any) -> None:
        cleaned = self._cleaned
        with self._lock:
            for body in bodies:
                if not cleaned[body]:
                    self._unique += 1
                if cleaned[body] < 255:
                    cleaned[body] += 1
            if self._unique >= self.n and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.moto_cpu += cpu_seconds(self.moto_pid)
                self.requests = self._sent - self._requests_at_start
                self.done.set()

    def start_clock(self) -> None:
        self.moto_cpu = -cpu_seconds(self.moto_pid)
        self._requests_at_start = self._sent

    def finish(self, timeout: float = VISIBILITY + 15) -> dict[str, Any]:
        """Empty every round queue (messages moto lost the delete of come back), then check.

        Returns notes; raises if a message was never cleaned up or a queue stays non-empty.
        """
        lost_deletes = 0
        deadline = time.monotonic() + timeout
        for url in self.urls:
            while True:
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )["Attributes"]
                if not any(int(value) for value in attributes.values()):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"queue not empty at the end: {url} {attributes}")
                for message in self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", []):
                    body = int(message["Body"])
                    if not self._cleaned[body]:
                        raise RuntimeError(f"message {body} was never cleaned up")
                    lost_deletes += 1
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        never = self._cleaned.count(0)
        if never:
            raise RuntimeError(f"{never} of {self.n} messages were never cleaned up")
        redelivered = self.n - never - self._cleaned.count(1)
        return {"moto lost deletes": lost_deletes, "handled twice": redelivered}

    def delete_queues(self) -> None:
        for url in self.urls:
            with contextlib.suppress(Exception):
                self.sqs.delete_queue(QueueUrl=url)


class AdapterRounds(RoundsQueue):
    """The same rounds through the SQS adapter: one ``SQSQueue`` per round, one client."""

    def fill(self) -> None:
        from queue_consumer.adapters.sqs import SQSQueue

        super().fill()
        self.queues = [
            SQSQueue(
                queue_url=url, client=self.sqs, wait_time_seconds=0, visibility_timeout=VISIBILITY
            )
            for url in self.urls
        ]
        self._rounds: dict[str, int] = {}  # receipt handle -> round

    def _receive(self, index: int) -> list[Any]:
        messages = self.queues[index].get()
        for message in messages:
            self._rounds[message.receipt_handle] = index
        return messages

    def cleanup(self, messages: list[Any]) -> None:
        rounds: dict[int, list[Any]] = {}
        for message in messages:
            rounds.setdefault(self._rounds.pop(message.receipt_handle), []).append(message)
        for index, batch in rounds.items():
            self.queues[index].cleanup(batch)  # raises if a delete failed after retries
            self._tick(int(m.body) for m in batch)

    def close(self) -> None:
        for queue in self.queues:
            queue.close()


def trial(spec: dict[str, Any], handler: Any) -> dict[str, Any]:
    """Fill, run ``spec['runner']`` against the rounds, empty the queues, check."""
    from . import _runners

    threads = spec["threads"]
    sqs = client(spec["endpoint"], connections=threads + 20)
    kind = AdapterRounds if spec.get("adapter") else RoundsQueue
    queue = kind(sqs, spec["n"], spec["moto_pid"])
    queue.fill()
    try:
        queue.start_clock()
        problems: list[str] = []
        if spec["runner"] == "bare":
            seconds = _runners.bare_loop(queue, handler, threads=threads, drain=lambda: None)
        else:
            seconds, stats = _runners.consumer(
                queue,
                handler,
                max_workers=threads,
                max_handlers=spec["handlers"],
                messages_bulk_size=spec["bulk"],
            )
            problems += _runners.check_statistics(stats, queue.n, duplicates_allowed=True)
        notes = queue.finish()
    finally:
        queue.close()
        queue.delete_queues()
    notes["moto CPU %"] = round(100 * queue.moto_cpu / seconds)
    notes["requests/msg"] = round(queue.requests / queue.n, 2)
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}
