"""SQLiteQueue shared by processes: several drain one file; SIGKILL loses nothing.

Each child is ``python -c CHILD <db> <mode> ...`` and reports on stdout, one JSON line per
event, so the parent knows exactly what a child did before it died.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from queue_consumer.adapters.sqlite import SQLiteMessage, SQLiteQueue
from queue_consumer.testing import wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")

CHILD = r"""
import json, os, sys, time
from queue_consumer.adapters.sqlite import SQLiteQueue

path, mode, visibility = sys.argv[1], sys.argv[2], float(sys.argv[3])

def say(**event):
    print(json.dumps(event), flush=True)

with SQLiteQueue(path, visibility_timeout=visibility, max_messages=5) as queue:
    if mode == "drain":          # until the queue is empty and nothing is leased
        say(ready=True)
        while not os.path.exists(path + ".go"):  # all start together
            time.sleep(0.01)
        while True:
            batch = queue.get()
            if batch:
                say(got=[m.id for m in batch])
                queue.cleanup(batch)
            elif queue.stats()["depth"] == queue.stats()["in_flight"] == 0:
                break
    elif mode == "produce":      # 500 single puts: as many write transactions as can be
        for n in range(500):
            queue.put(f"{os.getpid()}-{n}")
    elif mode == "consume":      # drain until the producers are done and the queue empty
        while True:
            batch = queue.get()
            if batch:
                say(bodies=[m.body for m in batch])
                queue.cleanup(batch)
            elif os.path.exists(path + ".produced") and queue.stats()["depth"] == 0:
                break
    elif mode == "lease-and-hang":   # lease one batch, then "handle" it for ever
        batch = queue.get()
        say(got=[m.id for m in batch], until=time.time() + visibility)
        time.sleep(3600)
    elif mode == "churn":        # get / cleanup as fast as possible until killed
        say(started=True)
        while True:
            batch = queue.get()
            say(leased=[m.id for m in batch])
            queue.cleanup(batch)
            say(cleaned=[m.id for m in batch])
say(done=True)
"""


@contextmanager
def running(db: Path, mode: str, visibility: float) -> Iterator[subprocess.Popen[str]]:
    """A child on ``db``; killed (if still alive) and reaped on the way out."""
    command = [sys.executable, "-c", CHILD, str(db), mode, str(visibility)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def events(stream: IO[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.read().splitlines() if line.strip()]


def next_event(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()  # the per-test timeout bounds a child that hangs
    assert line, f"child exited early with {child.wait()}"
    event: dict[str, Any] = json.loads(line)
    return event


def kill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL


def drain_here(queue: SQLiteQueue, expected: int) -> list[SQLiteMessage]:
    """Take ``expected`` messages (waiting for leases to expire), cleaning them up."""
    taken: list[SQLiteMessage] = []

    def take() -> bool:
        batch = queue.get()
        queue.cleanup(batch)
        taken.extend(batch)
        return len(taken) >= expected

    wait_until(take, timeout=60, message=f"{len(taken)} of {expected} messages came back")
    return taken


def test_several_processes_drain_one_file_each_message_once(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    total = 1500
    with SQLiteQueue(db) as queue:
        ids = queue.put_many(range(total))
    reports = []
    with ExitStack() as stack:
        children = [stack.enter_context(running(db, "drain", 120)) for _ in range(3)]
        for child in children:
            assert next_event(child) == {"ready": True}
        Path(f"{db}.go").touch()
        for child in children:
            assert child.stdout is not None
            reports.append(events(child.stdout))
            assert child.wait(timeout=100) == 0
    delivered = Counter(i for report in reports for event in report for i in event.get("got", ()))
    assert delivered == Counter(ids)  # every message, none twice (leases never expired)
    assert all(report[-1] == {"done": True} for report in reports)
    with SQLiteQueue(db) as queue:
        assert queue.stats() == dict.fromkeys(queue.stats(), 0)


def test_producers_and_consumers_in_separate_processes(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    SQLiteQueue(db).close()
    with ExitStack() as stack:
        consumers = [stack.enter_context(running(db, "consume", 120)) for _ in range(2)]
        producers = [stack.enter_context(running(db, "produce", 120)) for _ in range(2)]
        for producer in producers:
            assert producer.wait(timeout=100) == 0
        Path(f"{db}.produced").touch()
        reports = []
        for consumer in consumers:
            assert consumer.stdout is not None
            reports.append(events(consumer.stdout))
            assert consumer.wait(timeout=100) == 0
    received = Counter(body for report in reports for e in report for body in e.get("bodies", ()))
    expected = Counter(f"{p.pid}-{n}" for p in producers for n in range(500))
    assert received == expected


def test_a_consumer_killed_after_leasing_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    with SQLiteQueue(db, max_messages=100) as queue:
        ids = queue.put_many([f"job {n}" for n in range(8)])
        with running(db, "lease-and-hang", 3) as child:
            leased = next_event(child)
            kill(child)
        assert leased["got"] == ids[:5]
        taken: list[SQLiteMessage] = []
        if time.time() < leased["until"] - 1:  # still leased (unless this machine crawls)
            taken = queue.get()
            assert [m.id for m in taken] == ids[5:]
            queue.cleanup(taken)
        taken += drain_here(queue, len(ids) - len(taken))
    attempts = {m.id: m.attempts for m in taken}
    assert attempts == {i: 2 if i in ids[:5] else 1 for i in ids}
    assert {m.body for m in taken} == {f"job {n}" for n in range(8)}


def test_a_consumer_killed_at_any_moment_leaves_a_consistent_file(tmp_path: Path) -> None:
    db = tmp_path / "churn.db"
    total = 3000
    with SQLiteQueue(db) as queue:
        ids = queue.put_many(range(total))
    leased: list[int] = []
    cleaned: set[int] = set()
    with running(db, "churn", 0.5) as child:
        assert next_event(child) == {"started": True}
        for _ in range(40):  # then kill it wherever it is: inside a transaction, or between
            event = next_event(child)
            leased = event.get("leased", leased)
            cleaned.update(event.get("cleaned", ()))
        kill(child)
        assert child.stdout is not None
        for event in events(child.stdout):  # what it said before it died
            leased = event.get("leased", leased)
            cleaned.update(event.get("cleaned", ()))
    unsure = set(leased) - cleaned  # cleanup may or may not have committed

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    with SQLiteQueue(db, max_messages=100) as queue:
        rest = queue.stats()
        remaining = rest["depth"] + rest["in_flight"]
        assert total - len(cleaned) - len(unsure) <= remaining <= total - len(cleaned)
        drained = {m.id for m in drain_here(queue, remaining)}
    assert not drained & cleaned  # what was cleaned up never comes back
    assert set(ids) - cleaned - drained <= unsure  # and nothing else is missing
