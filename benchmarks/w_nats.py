"""NATS JetStream, no-op handler: the consumer through JetStreamQueue (bulk 1 and 10) beside
a bare nats-py pull loop on the same server, and taskiq-nats when it is installed.

Every trial gets a fresh stream on a private ``nats-server -js`` (file storage, started
once for the workload), filled with N messages before the clock starts, and deleted at the
end. The clock stops at the N-th acknowledgement (the N-th task for taskiq). References:

- ``bare``: one asyncio task: ``fetch(10)``, no-op, ``msg.ack()`` for each (a plain
  publish: unconfirmed, lost if the connection drops), the nats-py loop everyone writes.
- ``bare ack_sync``: the same loop waiting for the server to confirm each ack in turn.
- the consumer: ``JetStreamQueue`` acks are confirmed (``ack_sync`` semantics), all acks of a
  chunk at once, and chunks of several handler slots overlap on the adapter's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ._harness import Plan, Row, Target

WORKERS = 2
SLOTS = 8
FILL_CHUNK = 1000


@contextlib.contextmanager
def environment() -> Iterator[dict[str, Any]]:
    """A private nats-server with JetStream on a free port, for the whole workload."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as store:
        process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start")
                time.sleep(0.05)
            yield {"server": f"nats://127.0.0.1:{port}", "server_pid": process.pid}
        finally:
            process.terminate()
            process.wait(10)


def plan(quick: bool) -> Plan:
    n = 5_000 if quick else 20_000
    spec = {"module": "w_nats"}
    rows = [
        Row(
            "bare",
            "bare nats-py pull loop",
            "fetch(10), plain ack()",
            n,
            {**spec, "runner": "bare"},
        ),
        Row(
            "bare_sync",
            "bare nats-py pull loop",
            "fetch(10), ack_sync() each in turn",
            n,
            {**spec, "runner": "bare", "sync": True},
        ),
        Row(
            "bulk1",
            "Consumer + JetStreamQueue",
            f"max_workers={WORKERS}, max_handlers={SLOTS}, bulk 1, confirmed acks",
            n,
            {**spec, "runner": "consumer", "bulk": 1},
        ),
        Row(
            "bulk10",
            "Consumer + JetStreamQueue",
            f"max_workers={WORKERS}, max_handlers={SLOTS}, bulk 10, confirmed acks",
            n,
            {**spec, "runner": "consumer", "bulk": 10},
        ),
    ]
    targets = [
        Target("NATS bulk 10 vs bare loop (plain acks)", "bulk10", "bare", 0.50),
    ]
    if _has_taskiq():
        rows.append(
            Row(
                "taskiq",
                "taskiq-nats PullBasedJetStreamBroker",
                "pull_consume_batch=10, Receiver(max_async_tasks=100), plain acks",
                n,
                {**spec, "runner": "taskiq"},
            )
        )
        targets.append(Target("NATS bulk 1 vs taskiq-nats", "bulk1", "taskiq", 1.0))
    return Plan(
        "NATS",
        "NATS JetStream (private nats-server, file storage), no-op handler",
        rows,
        references=["bare"],
        targets=targets,
        notes=[NOTE],
        runs=3,
    )


NOTE = (
    "`round trips/msg`: requests that wait for the server (pulls, confirmed acks) per "
    "message; a plain `ack()` is a publish without an answer. The consumer confirms every "
    "ack (a lost plain ack costs a duplicate), so its floor is 1 + pulls."
)


def _has_taskiq() -> bool:
    try:
        import taskiq_nats  # noqa: F401
    except ImportError:
        return False
    return True


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    stream = f"BENCH_{uuid.uuid4().hex[:10]}"
    server = spec["server"]
    n = spec["n"]
    if spec["runner"] == "taskiq":  # its own stream, filled through taskiq's kick
        seconds, notes = asyncio.run(_taskiq(server, stream, n))
        return {"ok": True, "seconds": seconds, "error": "", "notes": notes}
    asyncio.run(_fill(server, stream, n))
    try:
        if spec["runner"] == "bare":
            seconds, notes = asyncio.run(_bare(server, stream, n, spec.get("sync", False)))
            problems: list[str] = []
        else:
            seconds, notes, problems = _consumer(server, stream, n, spec["bulk"])
        left = asyncio.run(_left(server, stream))
        if left:
            problems.append(f"{left} messages left unacknowledged in the stream")
    finally:
        asyncio.run(_delete(server, [stream, f"{stream}_DEAD"]))
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


async def _fill(server: str, stream: str, n: int) -> None:
    import nats
    from nats.js.api import RetentionPolicy, StreamConfig

    nc = await nats.connect(server)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=stream, subjects=[stream], retention=RetentionPolicy.WORK_QUEUE)
    )
    headers = {"QC-Kind": "s"}  # what JetStreamQueue.put writes: every runner parses it
    for start in range(0, n, FILL_CHUNK):
        await asyncio.gather(
            *(
                js.publish(stream, str(i).encode(), headers=headers)
                for i in range(start, min(start + FILL_CHUNK, n))
            )
        )
    await nc.close()


async def _left(server: str, stream: str) -> int:
    import nats

    nc = await nats.connect(server)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


async def _delete(server: str, streams: list[str]) -> None:
    import nats

    nc = await nats.connect(server)
    js = nc.jetstream()
    for name in streams:
        with contextlib.suppress(Exception):
            await js.delete_stream(name)
    await nc.close()


async def _bare(server: str, stream: str, n: int, sync: bool) -> tuple[float, dict[str, Any]]:
    import nats
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(server)
    js = nc.jetstream()
    await js.add_consumer(
        stream, ConsumerConfig(durable_name="bare", ack_policy=AckPolicy.EXPLICIT, ack_wait=30)
    )
    sub = await js.pull_subscribe_bind("bare", stream)
    seen = bytearray(n)
    acked = pulls = 0
    started = time.perf_counter()
    while acked < n:
        try:
            msgs = await sub.fetch(10, timeout=1)
        except nats.errors.TimeoutError:
            continue
        pulls += 1
        for msg in msgs:
            seen[int(msg.data)] = 1  # the no-op handler
            if sync:
                await msg.ack_sync()
            else:
                await msg.ack()
            acked += 1
    await nc.flush()
    seconds = time.perf_counter() - started
    await nc.close()
    trips = (pulls + (n if sync else 0)) / n
    return seconds, {"round trips/msg": round(trips, 2), "lost": seen.count(0)}


def _consumer(
    server: str, stream: str, n: int, bulk: int
) -> tuple[float, dict[str, Any], list[str]]:
    from queue_consumer.adapters.nats import JetStreamQueue

    from . import _runners

    queue = JetStreamQueue(stream, servers=server, wait_time=1, ack_wait=30, handler_slots=SLOTS)
    counted = CountingJetStream(queue, n)
    try:
        seconds, stats = _runners.consumer(
            counted,
            _noop,
            max_workers=WORKERS,
            max_handlers=SLOTS,
            messages_bulk_size=bulk,
        )
        adapter = queue.statistics()
    finally:
        queue.close()
    problems = _runners.check_statistics(stats, n, duplicates_allowed=True)
    if counted.lost():
        problems.append(f"{counted.lost()} messages never acknowledged")
    trips = (counted.gets + adapter.acked) / n
    return seconds, {"round trips/msg": round(trips, 2), "get calls": counted.gets}, problems


def _noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


class CountingJetStream:
    """JetStreamQueue for the runners: ticks off stream sequences as they are acknowledged."""

    def __init__(self, queue: Any, n: int) -> None:
        self.queue = queue
        self.n = n
        self.done = threading.Event()
        self.finished_at = 0.0
        self.gets = 0
        self._acked = bytearray(n + 1)
        self._unique = 0
        self._received = 0
        self._lock = threading.Lock()

    def get(self) -> list[Any]:
        messages = self.queue.get()
        with self._lock:
            self.gets += 1
            self._received += len(messages)
        return messages  # type: ignore[no-any-return]

    @property
    def exhausted(self) -> bool:
        return self._received >= self.n

    def cleanup(self, messages: list[Any]) -> None:
        self.queue.cleanup(messages)
        with self._lock:
            for message in messages:
                if not self._acked[message.stream_seq]:
                    self._acked[message.stream_seq] = 1
                    self._unique += 1
            if self._unique >= self.n and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.done.set()

    def reject(self, messages: list[Any], *, error: str | None = None) -> None:
        self.queue.reject(messages, error=error)

    def release(self, messages: list[Any]) -> None:
        self.queue.release(messages)

    def lost(self) -> int:
        return self._acked.count(0) - 1  # index 0 is no sequence


async def _taskiq(server: str, stream: str, n: int) -> tuple[float, dict[str, Any]]:
    from nats.js.api import AckPolicy, ConsumerConfig
    from taskiq.receiver import Receiver
    from taskiq_nats import PullBasedJetStreamBroker

    broker = PullBasedJetStreamBroker(
        servers=server,
        subject=f"{stream}.tasks",
        stream_name=f"{stream}_TASKIQ",
        durable="taskiq",
        consumer_config=ConsumerConfig(
            durable_name="taskiq", ack_policy=AckPolicy.EXPLICIT, ack_wait=30
        ),
        pull_consume_batch=10,
        pull_consume_timeout=1,
    )
    done = asyncio.Event()
    count = 0
    finished = 0.0

    @broker.task(task_name="noop")
    async def noop(i: int) -> None:
        nonlocal count, finished
        count += 1
        if count == n:
            finished = time.perf_counter()
            done.set()

    await broker.startup()
    try:
        for start in range(0, n, FILL_CHUNK):
            await asyncio.gather(*(noop.kiq(i) for i in range(start, min(start + FILL_CHUNK, n))))
        receiver = Receiver(broker, max_async_tasks=100, run_startup=False)
        stop = asyncio.Event()
        started = time.perf_counter()
        listener = asyncio.create_task(receiver.listen(stop))
        await asyncio.wait_for(done.wait(), 600)
        stop.set()
        listener.cancel()
        with contextlib.suppress(BaseException):
            await listener
    finally:
        await broker.shutdown()
        await _delete(server, [f"{stream}_TASKIQ"])
    return finished - started, {"round trips/msg": 0.1}


if __name__ == "__main__":  # a quick look without the harness
    with environment() as env:
        for spec in plan(True).rows:
            assert spec.spec is not None
            result = trial({**spec.spec, **env, "n": spec.n})
            print(spec.key, round(spec.n / result["seconds"]), result, flush=True)
    os._exit(0)
