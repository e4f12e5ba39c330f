"""Consumer + RedisStreamQueue end to end, with faults: random handler failures in
threads and processes, several consumer processes, a consumer SIGKILLed mid-chunk, its
connections killed by the server (CLIENT KILL), the server itself SIGKILLed and
restarted. The assertion is always: nothing lost; duplicates are counted and reported.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if __package__:
    from .redis_server import (
        LOCAL,
        MakeQueue,
        delete_stream,
        make_queue,
        private_redis,
        redis_url,
        stream_name,
    )
else:
    from redis_server import (
        LOCAL,
        MakeQueue,
        delete_stream,
        make_queue,
        private_redis,
        redis_url,
        stream_name,
    )

import redis

from queue_consumer import Consumer
from queue_consumer.adapters.redis import RedisMessage, RedisStreamQueue
from queue_consumer.testing import wait_until

__all__ = ["make_queue", "private_redis", "redis_url", "stream_name"]  # fixtures, by name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def report_duplicates(seen: list[str]) -> int:
    repeats = sum(count - 1 for count in Counter(seen).values())
    if repeats:  # at-least-once: a redelivery after a fault is a duplicate, never a loss
        print(f"\n{repeats} message(s) handled more than once (at-least-once delivery)")
    return repeats


def flaky_to_file(path: str, messages: Iterator[RedisMessage]) -> None:
    """Fails about one attempt in five (the same ones in threads and processes); records
    each success as a line."""
    with open(path, "a", encoding="utf-8") as out:
        for message in messages:
            if zlib.crc32(f"{message.body}/{message.delivery_count}".encode()) % 5 == 0:
                raise RuntimeError(f"random failure on {message.body}")
            out.write(f"{message.body}\n")
            out.flush()


def drained(queue: RedisStreamQueue) -> bool:
    stats = queue.stats()
    return stats["depth"] == 0 and stats["in_flight"] == 0


@pytest.mark.parametrize("threads", [True, False], ids=["threads", "processes"])
def test_thousand_messages_with_random_failures(
    make_queue: MakeQueue, tmp_path: Path, threads: bool
) -> None:
    queue = make_queue(retry_delay=0.0, max_attempts=8, reclaim_interval=0.05, max_messages=10)
    bodies = [f"m{i:04d}" for i in range(1000)]
    for start in range(0, len(bodies), 250):
        queue.put_many(bodies[start : start + 250])
    out = tmp_path / "handled.txt"
    handler = functools.partial(flaky_to_file, str(out))
    consumer = Consumer(
        queue,
        handler,
        max_workers=2,
        max_handlers=4,
        messages_bulk_size=5,
        with_thread_executor=threads,
    )
    with consumer:
        wait_until(lambda: drained(queue), timeout=90, interval=0.1, message="drained")
        wait_until(lambda: consumer.statistics().in_flight == 0, timeout=30)
    handled = lines(out)
    dead = {d.body for d in queue.dead_letters(limit=1000)}
    assert set(handled) | dead == set(bodies)  # nothing lost
    stats, adapter = consumer.statistics(), queue.stats()
    assert stats.failed > 100  # the failures did happen
    assert adapter["rejected"] + adapter["buried"] >= stats.failed - adapter["stale_settles"]
    assert adapter["stream_length"] == 0  # everything acked was deleted
    assert stats.errors == 0, stats.last_error
    report_duplicates(handled)


# -- consumer processes ------------------------------------------------------------------

CHILD = r"""
import json, os, sys, time
from queue_consumer import Consumer
from queue_consumer.adapters.redis import from_url

url, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])

def handle(messages):
    with open(out, "a") as f:
        for message in messages:
            sys.stdout.write(json.dumps({"started": message.body}) + "\n")
            sys.stdout.flush()
            time.sleep(delay)
            f.write(message.body + "\n")
            f.flush()

queue = from_url(url)
with Consumer(queue, handle, max_workers=1, max_handlers=2, messages_bulk_size=5) as consumer:
    print(json.dumps({"ready": queue.consumer}), flush=True)
    consumer.supervise(blocking=True)
"""


def start_child(url: str, out: Path, delay: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(out), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def first_event(child: subprocess.Popen[str], key: str) -> Any:
    assert child.stdout is not None
    for line in child.stdout:
        try:
            event = json.loads(line)
        except ValueError:  # two handler threads wrote at once
            continue
        if key in event:
            return event[key]
    raise AssertionError(f"the child exited before {key!r} ({child.wait()})")


def stop(child: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if child.poll() is None:
        child.send_signal(sig)
    child.wait(timeout=60)
    if child.stdout is not None:
        child.stdout.close()


def test_three_consumer_processes_share_the_stream(
    make_queue: MakeQueue, redis_url: str, tmp_path: Path
) -> None:
    queue = make_queue()
    bodies = [f"p{i:03d}" for i in range(600)]
    url = f"{redis_url}?stream={queue.stream}&block=0.5&claim_idle=30"
    outs = [tmp_path / f"out{n}.txt" for n in range(3)]
    children = [start_child(url, out) for out in outs]
    try:
        for child in children:
            first_event(child, "ready")
        queue.put_many(bodies)
        wait_until(lambda: drained(queue), timeout=60, interval=0.1, message="drained")
    finally:
        for child in children:
            stop(child)
    handled = [body for out in outs for body in lines(out)]
    assert set(handled) == set(bodies)
    assert sum(1 for out in outs if lines(out)) >= 2  # the work was shared
    report_duplicates(handled)


@pytest.mark.parametrize("same_name", [True, False], ids=["same-name", "another-consumer"])
def test_sigkill_mid_chunk_then_a_new_consumer(
    make_queue: MakeQueue, redis_url: str, tmp_path: Path, same_name: bool
) -> None:
    """A consumer killed while handling a chunk: a restart under the same name takes its
    entries back at once; any other consumer, after claim_idle."""
    claim_idle = 60.0 if same_name else 1.0
    queue = make_queue(claim_idle=claim_idle)
    bodies = [f"k{i:02d}" for i in range(30)]
    queue.put_many(bodies)
    name = f"victim-{uuid.uuid4().hex[:6]}"
    url = f"{redis_url}?stream={queue.stream}&consumer={name}&claim_idle={claim_idle}"
    victim_out = tmp_path / "victim.txt"
    victim = start_child(url, victim_out, delay=30.0)  # every handler hangs
    try:
        started = first_event(victim, "started")
    finally:
        victim.kill()  # SIGKILL mid-chunk: nothing settled, entries pending in its name
        stop(victim)
    assert queue.stats()["in_flight"] > 0
    out = tmp_path / "after.txt"
    heir = make_queue(
        queue.stream,
        consumer=name if same_name else None,
        claim_idle=claim_idle,
        reclaim_interval=0.1,
    )
    handler = functools.partial(slow_record, str(out))
    with Consumer(heir, handler, max_workers=1, max_handlers=2, messages_bulk_size=5):
        # Same name: at once, far sooner than claim_idle (60 s) would allow.
        wait_until(lambda: drained(heir), timeout=30, interval=0.1, message="recovered")
    assert set(lines(out)) == set(bodies)
    assert started in lines(out)
    assert heir.stats()["reclaimed"] >= 1
    report_duplicates(lines(out) + lines(victim_out))


# -- server-side faults --------------------------------------------------------------


def slow_record(path: str, messages: Iterator[RedisMessage]) -> None:
    import time

    with open(path, "a", encoding="utf-8") as out:
        for message in messages:
            time.sleep(0.002)
            out.write(f"{message.body}\n")
            out.flush()


def test_client_kill_of_the_consumers_connections(make_queue: MakeQueue, tmp_path: Path) -> None:
    name = f"qc-victim-{uuid.uuid4().hex[:8]}"
    # A read whose reply dies with its connection leaves its entries pending to this
    # consumer: they come back after claim_idle (kept short here; the heartbeat keeps the
    # entries being handled).
    queue = make_queue(
        client_options={"client_name": name}, block=0.5, reclaim_interval=0.1, claim_idle=2.0
    )
    admin = redis.Redis.from_url(LOCAL)
    bodies = [f"c{i:04d}" for i in range(600)]
    queue.put_many(bodies)
    out = tmp_path / "handled.txt"
    handler = functools.partial(slow_record, str(out))
    killed = 0
    consumer = Consumer(queue, handler, max_workers=2, max_handlers=4, messages_bulk_size=5)
    with consumer:
        for threshold in (100, 300):
            wait_until(lambda t=threshold: len(lines(out)) >= t, timeout=30)  # type: ignore[misc]
            for client in admin.client_list():
                if client.get("name") == name:
                    admin.client_kill_filter(_id=client["id"])
                    killed += 1
        wait_until(lambda: drained(queue), timeout=60, interval=0.1, message="drained")
    admin.close()
    assert killed >= 2  # the connections were there, and were cut
    assert set(lines(out)) == set(bodies)
    report_duplicates(lines(out))


@pytest.mark.parametrize("appendonly", [False, True], ids=["in-memory", "appendfsync-always"])
def test_the_server_killed_and_restarted_mid_run(
    private_redis: Any, tmp_path: Path, appendonly: bool
) -> None:
    server = private_redis(appendonly=appendonly)
    stream = f"qc-test-{uuid.uuid4().hex[:8]}"
    queue = RedisStreamQueue(server.url, stream, block=0.3, reclaim_interval=0.1, claim_idle=2.0)
    bodies = [f"s{i:04d}" for i in range(600)]
    queue.put_many(bodies)
    out = tmp_path / "handled.txt"
    handler = functools.partial(slow_record, str(out))
    consumer = Consumer(queue, handler, max_workers=2, max_handlers=4, messages_bulk_size=5)
    try:
        with consumer:
            wait_until(lambda: len(lines(out)) >= 150, timeout=30)
            server.restart()  # SIGKILL, then a new server on the same port and directory
            handled_at_restart = set(lines(out))
            stats = queue.stats() if appendonly else None
            if not appendonly:
                # What an in-memory server loses in a restart (Redis persistence, not the
                # adapter): every key, so every entry not yet handled and acked, the
                # group with its pending entries, and the dead letters. The consumer has
                # made the group (and an empty stream) again by itself: nothing of the
                # old stream is left.
                client = redis.Redis.from_url(server.url)
                assert client.xlen(queue.keys["stream"]) == 0
                assert client.exists(queue.keys["dead"], queue.keys["delayed"]) == 0
                client.close()
                lost = [b for b in bodies if b not in handled_at_restart]
                queue.put_many(lost)  # the producer sends again what the server lost
            else:
                assert stats is not None and stats["stream_length"] > 0  # kept on disk
            late = [f"late{i:03d}" for i in range(50)]  # the consumer took up by itself
            queue.put_many(late)
            wait_until(
                lambda: set(bodies + late) <= set(lines(out)),
                timeout=60,
                interval=0.1,
                message="everything handled after the restart",
            )
            wait_until(lambda: drained(queue), timeout=30, interval=0.1)
    finally:
        queue.close()
        delete_stream(server.url, stream)
    report_duplicates(lines(out))


def test_nothing_left_behind_in_the_shared_server(redis_url: str, stream_name: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.xadd(f"{{{stream_name}}}", {"k": "s", "d": "x"})
    delete_stream(redis_url, stream_name)
    assert client.exists(f"{{{stream_name}}}") == 0
    assert os.environ.get("QC_NEVER_SET") is None
