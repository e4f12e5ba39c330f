"""SQLiteQueue in one process: bodies, leases, retries, dead letters, threads, bad inputs."""

from __future__ import annotations

import os
import pickle
import re
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from queue_consumer.adapters import sqlite as adapter
from queue_consumer.adapters.sqlite import (
    DeadLetter,
    SQLiteMessage,
    SQLiteQueue,
    SQLiteQueueError,
    from_url,
)
from queue_consumer.errors import ConfigurationError, ConsumerStateError
from queue_consumer.testing import wait_until


class Clock:
    """The adapter's wall clock, moved by hand: due times without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(adapter, "_now", fake)
    return fake


def collect(queue: SQLiteQueue, into: list[SQLiteMessage]) -> bool:
    """One get() into ``into``; true once something arrived (a wait_until predicate)."""
    into.extend(queue.get())
    return bool(into)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def queue(db: Path) -> Any:
    with SQLiteQueue(db, visibility_timeout=10, max_attempts=3, retry_delay=1) as q:
        yield q


# -- bodies and order ----------------------------------------------------------------

BODIES = [
    "text",
    "",
    "ünïcødé ✓ 🐍",
    b"\x00\xff binary",
    b"",
    {"to": "ann@example.com", "tags": ["a", "b"], "n": 1.5, "ok": True, "none": None},
    [1, "two", [3]],
    0,
    42,
    -3.25,
    True,
    False,
    None,
    '{"looks": "like json"}',  # a str stays a str, even when it parses as JSON
    b'"bytes"',
]


@pytest.mark.parametrize("body", BODIES, ids=repr)
def test_each_body_type_comes_back_as_it_went_in(queue: SQLiteQueue, body: Any) -> None:
    message_id = queue.put(body)
    [message] = queue.get()
    assert message.id == message_id
    assert type(message.body) is type(body)
    assert message.body == body
    assert message.attempts == 1
    assert queue.cleanup([message]) == 1
    assert queue.stats()["depth"] == queue.stats()["in_flight"] == 0


def test_bodies_survive_reopening_the_file(db: Path) -> None:
    with SQLiteQueue(db) as q:
        q.put_many(BODIES)
    with SQLiteQueue(db, max_messages=100) as q:
        assert [m.body for m in q.get()] == BODIES


def test_get_returns_oldest_first_up_to_max_messages(db: Path) -> None:
    with SQLiteQueue(db, max_messages=3) as q:
        ids = q.put_many(range(7))
        assert ids == sorted(ids) and len(set(ids)) == 7
        batches = [[m.body for m in q.get()] for _ in range(4)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6], []]


def test_one_get_leases_one_batch_with_one_fresh_token(queue: SQLiteQueue) -> None:
    queue.put_many("abc")
    first = queue.get()
    assert len({m.lease for m in first}) == 1
    queue.release(first)
    second = queue.get()
    assert [m.id for m in second] == [m.id for m in first]
    assert second[0].lease != first[0].lease


def test_put_many_with_a_bad_body_puts_nothing(queue: SQLiteQueue) -> None:
    with pytest.raises(TypeError, match="set"):
        queue.put_many(["fine", {1, 2}])
    assert queue.stats()["depth"] == 0
    assert queue.put_many([]) == []


def test_delayed_put_is_invisible_until_due(queue: SQLiteQueue, clock: Clock) -> None:
    queue.put("later", delay=5)
    assert queue.get() == []
    assert queue.stats() == {
        "depth": 1,
        "visible": 0,
        "delayed": 1,
        "in_flight": 0,
        "dead_letters": 0,
    }
    clock.advance(4.9)
    assert queue.get() == []
    clock.advance(0.1)
    assert [m.body for m in queue.get()] == ["later"]


# -- leases --------------------------------------------------------------------------


def test_leased_messages_are_invisible_until_the_lease_expires(db: Path, clock: Clock) -> None:
    with SQLiteQueue(db, visibility_timeout=30) as q:
        q.put("job")
        [first] = q.get()
        assert q.stats()["in_flight"] == 1
        clock.advance(29.9)
        assert q.get() == []
        clock.advance(0.1)
        [again] = q.get()
    assert (again.id, again.body, again.attempts) == (first.id, "job", 2)
    assert again.lease != first.lease


def test_expired_lease_brings_messages_back_in_real_time(db: Path) -> None:
    with SQLiteQueue(db, visibility_timeout=0.2, heartbeat=False) as q:
        ids = q.put_many(["a", "b"])
        assert [m.id for m in q.get()] == ids
        returned: list[SQLiteMessage] = []
        wait_until(lambda: collect(q, returned), timeout=30)
    assert [m.id for m in returned] == ids
    assert {m.attempts for m in returned} == {2}


def test_a_stale_delivery_can_no_longer_settle_the_message(db: Path, clock: Clock) -> None:
    with SQLiteQueue(db, visibility_timeout=10) as q:
        q.put("job")
        [stale] = q.get()
        clock.advance(10)
        [live] = q.get()  # redelivered: the first consumer's lease is gone
        assert q.cleanup([stale]) == 0
        assert q.reject([stale]) == 0
        assert q.release([stale]) == 0
        assert q.stats()["in_flight"] == 1
        assert q.get() == []
        assert q.cleanup([live]) == 1
        assert q.cleanup([live]) == 0  # twice is harmless
        assert q.stats() == dict.fromkeys(q.stats(), 0)


def test_cleanup_after_lease_expiry_still_works_if_nobody_took_it(db: Path, clock: Clock) -> None:
    with SQLiteQueue(db, visibility_timeout=1) as q:
        q.put("slow")
        [message] = q.get()
        clock.advance(5)
        assert q.cleanup([message]) == 1
        assert q.get() == []


def test_extend_pushes_a_live_lease_only(db: Path, clock: Clock) -> None:
    with SQLiteQueue(db, visibility_timeout=10) as q:
        q.put("slow")
        [message] = q.get()
        clock.advance(8)
        assert q.extend([message]) == 1  # leased until 8 + 10
        clock.advance(9.9)
        assert q.get() == []
        clock.advance(0.1)
        [again] = q.get()
        assert q.extend([message], timeout=60) == 0  # stale: the lease moved on
        assert q.extend([again], timeout=60) == 1
        clock.advance(59.9)
        assert q.get() == []
        with pytest.raises(ConfigurationError, match="timeout"):
            q.extend([again], timeout=0)


def test_heartbeat_keeps_a_slow_message_leased_until_settled(db: Path) -> None:
    with (
        SQLiteQueue(db, visibility_timeout=2, heartbeat=True) as holder,
        SQLiteQueue(db) as other,
    ):
        holder.put("slow")
        [message] = holder.get()
        heartbeat = holder._heartbeat
        assert heartbeat is not None
        leaked: list[SQLiteMessage] = []
        # Two extensions take over two visibility timeouts; meanwhile nobody else gets it.
        wait_until(
            lambda: collect(other, leaked) or heartbeat.extensions >= 2,
            timeout=60,
        )
        assert leaked == []
        assert holder.cleanup([message]) == 1
        assert heartbeat.held() == 0


def test_a_closed_heartbeat_lets_the_lease_expire(db: Path) -> None:
    with SQLiteQueue(db, visibility_timeout=0.5) as other:
        holder = SQLiteQueue(db, visibility_timeout=0.5, heartbeat=True)
        holder.put("job")
        [message] = holder.get()
        holder.close()  # a consumer that stopped (or died) no longer extends
        back: list[SQLiteMessage] = []
        wait_until(lambda: collect(other, back), timeout=30)
        assert [(m.id, m.attempts) for m in back] == [(message.id, 2)]


# -- reject, backoff, dead letters ---------------------------------------------------


def test_backoff_doubles_and_is_capped(db: Path) -> None:
    with SQLiteQueue(db, retry_delay=0.5, max_retry_delay=3) as q:
        assert [q.backoff(n) for n in (1, 2, 3, 4, 5, 10_000)] == [0.5, 1, 2, 3, 3, 3]


def test_reject_retries_after_backoff_then_dead_letters(db: Path, clock: Clock) -> None:
    with SQLiteQueue(db, max_attempts=4, retry_delay=1, max_retry_delay=3) as q:
        message_id = q.put({"n": 1})
        for attempt, delay in [(1, 1), (2, 2), (3, 3)]:
            [message] = q.get()
            assert (message.id, message.attempts) == (message_id, attempt)
            assert q.reject([message], error=f"boom {attempt}") == 1
            assert q.stats()["delayed"] == 1
            clock.advance(delay - 0.01)
            assert q.get() == []
            clock.advance(0.01)
        [last] = q.get()
        assert last.attempts == 4
        assert q.reject([last], error="ValueError: bad") == 1
        assert q.stats() == {
            "depth": 0,
            "visible": 0,
            "delayed": 0,
            "in_flight": 0,
            "dead_letters": 1,
        }
        clock.advance(1000)
        assert q.get() == []
        [dead] = q.dead_letters()
        assert isinstance(dead, DeadLetter)
        assert (dead.id, dead.body, dead.attempts) == (message_id, {"n": 1}, 4)
        assert dead.last_error == "ValueError: bad"
        assert dead.died_at == clock.now - 1000


def test_reject_without_error_names_the_reason(db: Path) -> None:
    with SQLiteQueue(db, max_attempts=1) as q:
        q.put("x")
        q.reject(q.get())
        [dead] = q.dead_letters()
    assert dead.last_error is not None and "1" in dead.last_error


def test_redrive_sends_dead_letters_back_with_attempts_reset(db: Path) -> None:
    with SQLiteQueue(db, max_attempts=1, max_messages=10) as q:
        ids = q.put_many(["a", "b", "c"])
        q.reject(q.get())
        assert [d.id for d in q.dead_letters()] == ids
        assert [d.id for d in q.dead_letters(limit=2)] == ids[:2]
        assert q.redrive([ids[1], 999_999]) == 1
        [back] = q.get()
        assert (back.id, back.body, back.attempts) == (ids[1], "b", 1)
        assert q.redrive() == 2
        assert q.redrive() == 0
        assert q.redrive([]) == 0
        assert sorted(m.id for m in q.get()) == [ids[0], ids[2]]
        assert q.stats()["dead_letters"] == 0


def test_a_message_whose_last_lease_expired_is_dead_lettered(db: Path, clock: Clock) -> None:
    # A message that kills its consumer every time must not be delivered for ever.
    with SQLiteQueue(db, visibility_timeout=1, max_attempts=2) as q:
        q.put("poison")
        q.put("fine")
        for _ in range(2):
            assert [m.body for m in q.get()] == ["poison", "fine"]
            clock.advance(1)
        assert q.get() == []
        assert q.stats()["dead_letters"] == 2
        [dead, _] = q.dead_letters()
        assert dead.body == "poison" and dead.attempts == 3
        assert dead.last_error is not None and "expired" in dead.last_error


def test_a_batch_of_only_spent_messages_does_not_look_like_an_empty_queue(
    db: Path, clock: Clock
) -> None:
    with SQLiteQueue(db, visibility_timeout=1, max_attempts=1, max_messages=2) as q:
        q.put_many(["spent", "spent too"])
        assert len(q.get()) == 2
        clock.advance(1)
        q.put("fresh")
        assert [m.body for m in q.get()] == ["fresh"]
        assert q.stats()["dead_letters"] == 2


def test_release_returns_messages_at_once_without_counting_the_attempt(
    queue: SQLiteQueue, clock: Clock
) -> None:
    old = queue.put("old")
    queue.put("new")
    [first, _] = queue.get()
    clock.advance(1)
    newer = queue.put("newer")
    assert queue.release([first]) == 1
    [again, then] = queue.get()
    assert (again.id, again.attempts) == (old, 1)  # attempt undone, back at the front
    assert then.id == newer


def test_named_queues_share_a_file_but_nothing_else(db: Path) -> None:
    with (
        SQLiteQueue(db, queue="emails", max_attempts=1) as emails,
        SQLiteQueue(db, queue="reports") as reports,
    ):
        emails.put("mail")
        reports.put("report")
        assert [m.body for m in reports.get()] == ["report"]
        emails.reject(emails.get())
        assert emails.stats()["dead_letters"] == 1
        assert reports.stats()["dead_letters"] == 0
        assert reports.dead_letters() == [] and reports.redrive() == 0
        assert reports.purge(dead_letters=True) == 1
        assert emails.stats()["dead_letters"] == 1


def test_purge_empties_one_queue(queue: SQLiteQueue) -> None:
    queue.put_many(range(5))
    queue.get()
    assert queue.purge() == 5
    assert queue.stats()["depth"] == queue.stats()["in_flight"] == 0


def test_without_update_returning_the_fallback_behaves_the_same(
    db: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter, "_HAS_RETURNING", False)
    with SQLiteQueue(db, visibility_timeout=1, max_attempts=1, max_messages=2) as q:
        ids = q.put_many(["a", b"b", {"c": 3}])
        batch = q.get()
        assert [(m.id, m.body, m.attempts) for m in batch] == [(ids[0], "a", 1), (ids[1], b"b", 1)]
        clock.advance(1)
        assert [m.id for m in q.get()] == [ids[2]]  # the first two spent their attempt
        assert q.get() == []
        assert [d.id for d in q.dead_letters()] == ids[:2]


def test_wait_time_makes_an_empty_get_wait(db: Path) -> None:
    with SQLiteQueue(db, wait_time=0.3) as q:
        started = time.monotonic()
        assert q.get() == []
        assert time.monotonic() - started >= 0.3
        threading.Timer(0.05, q.put, ["late"]).start()
        got: list[SQLiteMessage] = []
        wait_until(lambda: collect(q, got), timeout=30)
        assert [m.body for m in got] == ["late"]


def test_wait_time_is_at_most_20_seconds_as_on_sqs(db: Path) -> None:
    with SQLiteQueue(db, wait_time=20) as q:
        assert q.wait_time == 20
    with pytest.raises(ConfigurationError, match="<= 20"):
        from_url(f"sqlite:///{db}?wait_time=100")


def test_interrupt_ends_a_waiting_get_at_once_and_every_later_wait(db: Path) -> None:
    with SQLiteQueue(db, wait_time=20) as q:
        results: list[list[SQLiteMessage]] = []
        waiting = threading.Thread(target=lambda: results.append(q.get()))
        started = time.monotonic()
        waiting.start()
        wait_until(lambda: time.monotonic() - started > 0.2, timeout=5)  # get() is waiting
        q.interrupt()
        waiting.join(timeout=5)
        assert not waiting.is_alive() and results == [[]]
        assert time.monotonic() - started < 5
        started = time.monotonic()
        assert q.get() == []  # no more waiting once interrupted
        assert time.monotonic() - started < 1
        q.put("still delivered")
        assert [m.body for m in q.get()] == ["still delivered"]


def test_the_heartbeat_is_on_by_default(db: Path) -> None:
    with SQLiteQueue(db) as q:
        assert q.heartbeat is True and q._heartbeat is not None
    with from_url(f"sqlite:///{db}?heartbeat=off") as q:
        assert q.heartbeat is False and q._heartbeat is None


def test_create_false_opens_an_existing_queue_file_only(tmp_path: Path) -> None:
    typo = tmp_path / "jbos.db"
    with pytest.raises(ConfigurationError, match=r"no SQLite queue file at .*jbos\.db"):
        SQLiteQueue(typo, create=False)
    with pytest.raises(ConfigurationError, match="no SQLite queue file"):
        from_url(f"sqlite:///{typo}?create=0")
    assert not typo.exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ConfigurationError, match="holds no queue_consumer queue"):
        SQLiteQueue(other, create=False)
    real = tmp_path / "jobs.db"
    SQLiteQueue(real).close()
    with SQLiteQueue(real, create=False) as q:
        assert q.stats()["depth"] == 0


# -- threads -------------------------------------------------------------------------


def test_many_threads_never_share_a_leased_message(db: Path) -> None:
    total = 600
    with SQLiteQueue(db, visibility_timeout=120, max_messages=7) as q:
        q.put_many(range(total))
        seen: list[int] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def drain() -> None:
            try:
                while True:
                    batch = q.get()
                    if not batch:
                        return
                    with lock:
                        seen.extend(m.body for m in batch)
                    assert q.cleanup(batch) == len(batch)
            except BaseException as exc:  # surfaced by the main thread below
                errors.append(exc)

        threads = [threading.Thread(target=drain) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=100)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert sorted(seen) == list(range(total))
        assert q.stats() == dict.fromkeys(q.stats(), 0)


def test_threads_with_their_own_queue_objects_on_one_file(db: Path) -> None:
    total = 300
    with SQLiteQueue(db) as producer:
        producer.put_many(range(total))
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def drain() -> None:
        with SQLiteQueue(db, visibility_timeout=120) as q:
            while batch := q.get():
                with lock:
                    seen.update(m.body for m in batch)
                q.cleanup(batch)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert seen == Counter(range(total))


# -- pickling and lifecycle ----------------------------------------------------------


def test_messages_and_queues_pickle(queue: SQLiteQueue) -> None:
    queue.put({"k": [1]})
    [message] = queue.get()
    copy = pickle.loads(pickle.dumps(message))
    assert copy == message and copy.body == {"k": [1]}
    assert hash(copy) == hash(message)  # hashable even with a dict body
    with pickle.loads(pickle.dumps(queue)) as other:
        assert other.settings() == queue.settings()
        assert other.cleanup([copy]) == 1
    assert queue.stats()["in_flight"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connections(queue: SQLiteQueue) -> None:
    queue.put("from the parent")  # the parent now holds a pooled connection
    if threading.active_count() > 1:
        pytest.skip("forking with threads alive is unsafe (and warns on Python >= 3.12)")
    pid = os.fork()
    if pid == 0:  # the child: must not reuse the parent's connection
        code = 1
        try:
            queue.put("from the child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [m.body for m in queue.get()] == ["from the parent", "from the child"]


def test_closed_queue_refuses_work_and_close_is_idempotent(db: Path) -> None:
    q = SQLiteQueue(db)
    q.close()
    q.close()
    with pytest.raises(ConsumerStateError, match="closed"):
        q.put("x")
    with pytest.raises(ConsumerStateError):
        q.get()


# -- bad inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"queue": ""}, "queue"),
        ({"queue": 3}, "queue"),
        ({"visibility_timeout": 0}, "visibility_timeout"),
        ({"visibility_timeout": -1}, "visibility_timeout"),
        ({"visibility_timeout": float("inf")}, "visibility_timeout"),
        ({"visibility_timeout": "soon"}, "visibility_timeout"),
        ({"max_messages": 0}, "max_messages"),
        ({"max_messages": 2.5}, "max_messages"),
        ({"max_messages": True}, "max_messages"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"retry_delay": -0.1}, "retry_delay"),
        ({"retry_delay": float("nan")}, "retry_delay"),
        ({"retry_delay": 10, "max_retry_delay": 5}, "max_retry_delay"),
        ({"wait_time": -1}, "wait_time"),
        ({"wait_time": 20.5}, r"wait_time must be a number of seconds >= 0 and <= 20"),
        ({"wait_time": 1e308}, "wait_time"),
        ({"create": "maybe"}, "create"),
        ({"busy_timeout": None}, "busy_timeout"),
        ({"synchronous": "SOMETIMES"}, "synchronous"),
        ({"heartbeat": 1}, "heartbeat"),
    ],
)
def test_bad_arguments_are_configuration_errors(
    db: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SQLiteQueue(db, **kwargs)
    assert not db.exists()  # checked before touching the file


@pytest.mark.parametrize("path", ["", ":memory:", "file:x.db?mode=memory", None, 3])
def test_bad_paths_are_configuration_errors(path: Any) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteQueue(path)


def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text\n" * 50)
    with pytest.raises(ConfigurationError, match=re.escape("notes.txt")) as caught:
        SQLiteQueue(path)
    assert "not a usable SQLite database" in str(caught.value)


@pytest.mark.parametrize("where", ["directory", "missing/dir/queue.db"])
def test_a_path_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path, where: str) -> None:
    path = tmp_path if where == "directory" else tmp_path / where
    with pytest.raises(ConfigurationError, match=re.escape(str(tmp_path))):
        SQLiteQueue(path)


def test_a_file_locked_too_long_is_a_clear_error(db: Path) -> None:
    with SQLiteQueue(db, busy_timeout=0.05) as q:
        q.put("before")
        holder = sqlite3.connect(db, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's endless write transaction
            for action in (lambda: q.put("x"), q.get):
                with pytest.raises(SQLiteQueueError, match="locked") as caught:
                    action()
                assert str(db) in str(caught.value)
            assert q.stats()["depth"] == 1  # reading still works under WAL
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        q.put("after")  # the lock is gone: usable again
        assert [m.body for m in q.get()] == ["before", "after"]


def test_opening_a_file_locked_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("CREATE TABLE other (x)")
        with pytest.raises(SQLiteQueueError, match="locked") as caught:
            SQLiteQueue(path, busy_timeout=0.05)
        assert str(path) in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_switching_a_new_file_to_wal_waits_for_another_writer(tmp_path: Path) -> None:
    # SQLite fails the switch to WAL at once, without its busy handler, while another
    # connection writes (another process opening the same new file, say): it must wait.
    path = tmp_path / "fresh.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("CREATE TABLE other (x)")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO other VALUES (1)")
        timer = threading.Timer(0.2, holder.execute, ["COMMIT"])
        timer.start()
        try:
            with SQLiteQueue(path, busy_timeout=30) as q:
                q.put("x")
        finally:
            timer.join()
    finally:
        holder.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        check.close()


def test_a_file_from_a_newer_version_is_refused(db: Path) -> None:
    SQLiteQueue(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE queue_consumer_schema SET version = 99")
    conn.close()
    with pytest.raises(ConfigurationError, match="newer"):
        SQLiteQueue(db)


class Unserialisable:
    pass


@pytest.mark.parametrize(
    ("body", "name"),
    [({1, 2}, "set"), (Unserialisable(), "Unserialisable"), (bytearray(b"x"), "bytearray")],
)
def test_bodies_that_cannot_be_stored_are_type_errors(
    queue: SQLiteQueue, body: Any, name: str
) -> None:
    with pytest.raises(TypeError, match=name):
        queue.put(body)


def test_a_circular_body_is_a_type_error(queue: SQLiteQueue) -> None:
    body: list[Any] = []
    body.append(body)
    with pytest.raises(TypeError, match="list"):
        queue.put(body)


def test_settling_foreign_objects_is_a_type_error(queue: SQLiteQueue) -> None:
    for method in (queue.cleanup, queue.reject, queue.release):
        with pytest.raises(TypeError, match="SQLiteMessage"):
            method(["not a message"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="str"):
        queue.redrive(["1"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="delay"):
        queue.put("x", delay=-1)
    with pytest.raises(ConfigurationError, match="limit"):
        queue.dead_letters(limit=0)


# -- URLs ----------------------------------------------------------------------------


def test_url_with_a_relative_path_and_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = (
        "sqlite:///data/jobs.db?queue=emails&visibility_timeout=2.5&max_messages=3"
        "&max_attempts=7&retry_delay=0.5&max_retry_delay=9&wait_time=0&busy_timeout=1"
        "&synchronous=full&heartbeat=true"
    )
    (tmp_path / "data").mkdir()
    with from_url(url) as q:
        assert q.path == str(tmp_path / "data" / "jobs.db")
        assert q.settings() == {
            "path": str(tmp_path / "data" / "jobs.db"),
            "queue": "emails",
            "visibility_timeout": 2.5,
            "max_messages": 3,
            "max_attempts": 7,
            "retry_delay": 0.5,
            "max_retry_delay": 9.0,
            "wait_time": 0.0,
            "busy_timeout": 1.0,
            "synchronous": "FULL",
            "heartbeat": True,
        }
    assert (tmp_path / "data" / "jobs.db").exists()


def test_url_with_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "with space.db"
    with from_url(f"sqlite:///{tmp_path}/with%20space.db") as q:  # tmp_path starts with /
        assert q.path == str(path)
        assert q.queue == "default"
        q.put("x")
    assert path.exists()


def test_the_cli_url_opener_finds_the_adapter(tmp_path: Path) -> None:
    from queue_consumer._urls import open_queue

    queue = open_queue(f"sqlite:///{tmp_path}/cli.db?queue=q")
    try:
        assert isinstance(queue, SQLiteQueue) and queue.queue == "q"
    finally:
        queue.close()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://", "no database path"),
        ("sqlite:///", "no database path"),
        ("sqlite://host/jobs.db", "no host"),
        ("postgres:///jobs.db", "not a sqlite URL"),
        ("jobs.db", "not a sqlite URL"),
        ("sqlite:///jobs.db?nope=1", "unknown option 'nope'"),
        ("sqlite:///jobs.db?max_attempts=many", "max_attempts must be an integer"),
        ("sqlite:///jobs.db?max_attempts=0", "max_attempts"),
        ("sqlite:///jobs.db?queue=a&queue=b", "given twice"),
        ("sqlite:///jobs.db?queue=", "queue"),
        ("sqlite:///jobs.db?heartbeat=sometimes", "heartbeat must be true or false"),
    ],
)
def test_bad_urls_are_configuration_errors(
    url: str, match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=match):
        from_url(url)
    assert not (tmp_path / "jobs.db").exists()


def test_a_url_that_is_not_a_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="string"):
        from_url(b"sqlite:///x.db")  # type: ignore[arg-type]


def test_dead_letter_moves_a_message_at_once_whatever_its_attempts(db: Path) -> None:
    """PermanentFailure: the consumer calls dead_letter, which spends no more attempts."""
    with SQLiteQueue(db, max_attempts=5) as queue:
        queue.put("poison")
        [message] = queue.get()
        assert queue.dead_letter([message], error="PermanentFailure: bad payload") == 1
        [dead] = queue.dead_letters()
        assert (dead.body, dead.attempts, dead.last_error) == (
            "poison",
            1,
            "PermanentFailure: bad payload",
        )
        assert queue.stats()["dead_letters"] == 1 and queue.get() == []
        assert queue.dead_letter([message]) == 0  # a second, late call moves nothing
