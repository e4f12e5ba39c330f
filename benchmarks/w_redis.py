"""REDIS, no-op handler: the consumer through RedisStreamQueue (bulk 1 and bulk 10) beside a
bare redis-py stream loop, and beside Dramatiq's Redis broker and rq, on the local Redis.

Every trial uses its own stream (or namespace / queue) and deletes it at the end: the
server is shared. Entries are added before the clock starts; the clock stops at the n-th
cleanup. ``round trips/msg`` counts the client's requests (a pipeline or a script is one).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ._harness import Plan, Row, Target

URL = "redis://127.0.0.1:6379/0"
THREADS = 2
SLOTS = 16
PEER_N = 5_000  # Dramatiq runs at about 1-2k msg/s: 5,000 keeps a run under 10 s
RQ_N = 500  # rq forks a work horse per job (tens of jobs a second here)


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


def rq_noop(i: int) -> None:
    """rq's job (imported by its work horse by name)."""


@contextlib.contextmanager
def environment() -> Iterator[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"the REDIS workload needs Redis on {URL}: {exc}") from exc
    finally:
        client.close()
    yield {"url": URL}


def plan(quick: bool) -> Plan:
    n = 2_000 if quick else 20_000
    peers = 500 if quick else PEER_N
    spec = {"module": "w_redis"}
    rows = [
        Row(
            "bare",
            "bare redis-py loop",
            "1 thread: XREADGROUP COUNT 10, handle, XACK + XDEL (one pipeline)",
            n,
            {**spec, "runner": "bare"},
        ),
        Row(
            "bulk10",
            "Consumer + RedisStreamQueue",
            f"max_workers={THREADS}, max_handlers={SLOTS}, max_messages=10, bulk 10",
            n,
            {**spec, "runner": "consumer", "bulk": 10},
        ),
        Row(
            "bulk1",
            "Consumer + RedisStreamQueue",
            f"max_workers={THREADS}, max_handlers={SLOTS}, max_messages=10, bulk 1",
            n,
            {**spec, "runner": "consumer", "bulk": 1},
        ),
        Row(
            "dramatiq",
            "Dramatiq RedisBroker",
            f"1 worker process, {SLOTS} threads, max_retries=0",
            peers,
            {**spec, "runner": "dramatiq"},
        ),
        Row(
            "rq",
            "rq",
            "1 Worker (forks a work horse per job), burst mode",
            min(peers, RQ_N),
            {**spec, "runner": "rq"},
        ),
    ]
    return Plan(
        "REDIS",
        "REDIS Streams (local Redis 7.0), no-op handler",
        rows,
        references=["bare"],
        targets=[
            Target("REDIS bulk 10 vs bare redis-py loop", "bulk10", "bare", 0.90),
            Target("REDIS bulk 1 vs bare redis-py loop", "bulk1", "bare", 0.50),
        ],
        notes=[NOTE],
    )


NOTE = (
    "The bare loop and the adapter rows use 20,000 messages; Dramatiq "
    f"{PEER_N:,} and rq {RQ_N:,} (rates are per second; they are far slower). The bare "
    "loop acks without the adapter's fence (an XPENDING owner check per entry inside the "
    "cleanup script) and never reclaims, promotes or extends. Dramatiq and rq are "
    "benchmark-only installs, not dependencies."
)


# -- trials ---------------------------------------------------------------------------


class Checklist:
    """Bodies 0..n-1 ticked off as they are cleaned up; ``done`` at the n-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = threading.Event()
        self.finished_at = 0.0
        self._seen = bytearray(n)
        self._unique = 0
        self._repeats = 0
        self._lock = threading.Lock()

    def tick(self, bodies: Any) -> None:
        with self._lock:
            for body in bodies:
                if self._seen[body]:
                    self._repeats += 1
                else:
                    self._seen[body] = 1
                    self._unique += 1
            if self._unique >= self.n and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.done.set()

    def problems(self) -> list[str]:
        missing = self.n - self._unique
        return [f"{missing} of {self.n} never cleaned up"] if missing else []


class BenchQueue(Checklist):
    """The adapter under the harness's queue protocol (``done``, ``exhausted``)."""

    def __init__(self, queue: Any, n: int) -> None:
        super().__init__(n)
        self.queue = queue

    @property
    def exhausted(self) -> bool:
        return bool(self.queue.stats()["depth"] == 0)

    def get(self) -> list[Any]:
        return self.queue.get()  # type: ignore[no-any-return]

    def cleanup(self, messages: list[Any]) -> None:
        self.queue.cleanup(messages)
        self.tick(m.body for m in messages)

    def release(self, messages: list[Any]) -> None:
        self.queue.release(messages)

    def reject(self, messages: list[Any]) -> None:
        self.queue.reject(messages)


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count requests: each ``Redis.execute_command`` (a script call too) and each
    pipeline ``execute`` is one round trip."""
    import redis.client

    count = [0]
    lock = threading.Lock()
    single, batch = redis.client.Redis.execute_command, redis.client.Pipeline.execute

    def counted_single(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            count[0] += 1
        return single(self, *args, **kwargs)

    def counted_batch(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            count[0] += 1
        return batch(self, *args, **kwargs)

    redis.client.Redis.execute_command = counted_single  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted_batch  # type: ignore[method-assign]
    try:
        yield count
    finally:
        redis.client.Redis.execute_command = single  # type: ignore[method-assign]
        redis.client.Pipeline.execute = batch  # type: ignore[method-assign]


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    runner = spec["runner"]
    if runner == "dramatiq":
        return _dramatiq(spec)
    if runner == "rq":
        return _rq(spec)
    from queue_consumer.adapters.redis import RedisStreamQueue

    from . import _runners

    n, url = spec["n"], spec["url"]
    stream = f"bench-{uuid.uuid4().hex[:10]}"
    queue = RedisStreamQueue(url, stream, block=0.5, max_messages=10, max_connections=16)
    try:
        for start in range(0, n, 1000):
            queue.put_many(range(start, min(start + 1000, n)))
        queue.get()  # the group exists, the scripts are loaded: not in the timing
        queue.purge()
        for start in range(0, n, 1000):
            queue.put_many(range(start, min(start + 1000, n)))
        bench = BenchQueue(queue, n)
        problems: list[str] = []
        with round_trips() as trips:
            if runner == "bare":
                seconds = _bare(queue, bench)
            else:
                seconds, stats = _runners.consumer(
                    bench,
                    noop,
                    max_workers=THREADS,
                    max_handlers=SLOTS,
                    messages_bulk_size=spec["bulk"],
                )
                problems += _runners.check_statistics(stats, n, duplicates_allowed=True)
        problems += bench.problems()
        left = queue.stats()
        if left["stream_length"] or left["in_flight"]:
            problems.append(f"left on the stream: {left}")
        notes = {"round trips/msg": round(trips[0] / n, 3), "handled twice": bench._repeats}
    finally:
        with contextlib.suppress(Exception):
            queue._client.delete(*queue.keys.values())
        queue.close()
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


def _bare(queue: Any, bench: BenchQueue) -> float:
    """One plain loop on its own redis-py client: read 10, handle, XACK + XDEL."""
    import redis

    client = redis.Redis.from_url(queue.settings()["url"], socket_timeout=10)
    key, group = queue.keys["stream"], queue.group
    started = time.perf_counter()
    while not bench.done.is_set():
        reply = client.xreadgroup(group, "bare", {key: ">"}, count=10, block=500)
        if not reply:
            continue
        entries = reply[0][1]
        ids = [entry_id for entry_id, _ in entries]
        noop(iter(entries))
        pipe = client.pipeline(transaction=False)
        pipe.xack(key, group, *ids)
        pipe.xdel(key, *ids)
        pipe.execute()
        bench.tick(int(fields[b"d"]) for _, fields in entries)
    client.close()
    return bench.finished_at - started


def _dramatiq(spec: dict[str, Any]) -> dict[str, Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    n = spec["n"]
    namespace = f"bench-dramatiq-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=spec["url"], namespace=namespace)
    dramatiq.set_broker(broker)
    bench = Checklist(n)

    @dramatiq.actor(broker=broker, queue_name="noop", max_retries=0)
    def handle(i: int) -> None:
        bench.tick([i])

    for i in range(n):
        handle.send(i)
    with round_trips() as trips:
        started = time.perf_counter()
        worker = dramatiq.Worker(broker, worker_threads=SLOTS, worker_timeout=100)
        worker.start()
        finished = bench.done.wait(600)
        worker.stop()
    seconds = bench.finished_at - started
    broker.flush_all()
    for key in broker.client.scan_iter(f"{namespace}:*"):  # its heartbeats, left by flush_all
        broker.client.delete(key)
    broker.close()
    problems = bench.problems() if finished else [f"timed out: {bench._unique} of {n}"]
    notes = {"round trips/msg": round(trips[0] / n, 3)}
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


def _rq(spec: dict[str, Any]) -> dict[str, Any]:
    import redis
    from rq import Queue, Worker

    n = spec["n"]
    connection = redis.Redis.from_url(spec["url"])
    queue = Queue(f"bench-rq-{uuid.uuid4().hex[:8]}", connection=connection)
    jobs = [Queue.prepare_data(rq_noop, (i,), result_ttl=0, failure_ttl=60) for i in range(n)]
    for start in range(0, n, 1000):
        queue.enqueue_many(jobs[start : start + 1000])
    worker = Worker([queue], connection=connection)
    with round_trips() as trips:
        started = time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        seconds = time.perf_counter() - started
    failed = queue.failed_job_registry.count
    left = queue.count
    queue.delete(delete_jobs=True)
    with contextlib.suppress(Exception):
        worker.register_death()
    connection.close()
    problems = []
    if failed or left:
        problems.append(f"{failed} failed, {left} left")
    notes = {"round trips/msg": round(trips[0] / n, 3)}
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}
