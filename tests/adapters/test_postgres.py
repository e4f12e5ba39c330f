"""PostgresQueue on the local server: the contract, leases and fencing, retries and dead
letters, FIFO groups, the caller's transaction, LISTEN/NOTIFY, declaring the schema."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from postgres_helpers import Database, pg, psycopg

from queue_consumer import Consumer
from queue_consumer.adapters.postgres import (
    DeadLetter,
    PostgresMessage,
    PostgresQueue,
)
from queue_consumer.errors import ConfigurationError, ConsumerStateError
from queue_consumer.testing import wait_until

__all__ = ["pg"]  # the fixture, used by name


def seconds_until_visible(db: Database, message_id: int) -> float:
    """Server-side: how long until the row is visible (negative: it is)."""
    return float(
        db.scalar(
            f'SELECT extract(epoch FROM visible_at - now()) FROM "{db.schema}".messages '
            "WHERE id = %s",
            message_id,
        )
    )


def test_bodies_come_back_as_they_were_put(pg: Database) -> None:
    queue = pg.queue()
    bodies: list[Any] = ["text é", b"\x00\xffraw", {"n": 1, "list": [1, 2]}, [1, "a"], 7, None]
    ids = queue.put_many(bodies)
    assert ids == sorted(ids)
    header_id = queue.put("with headers", headers={"traceparent": "00-abc-def-01"})
    got = queue.get()
    assert [m.id for m in got] == [*ids, header_id]
    assert [m.body for m in got[:-1]] == bodies
    assert got[-1].headers == {"traceparent": "00-abc-def-01"}
    for message in got:
        assert message.attempts == message.delivery_count == 1
        assert message.queue == "jobs" and message.group is None
        copy = pickle.loads(pickle.dumps(message))
        assert copy == message and copy.body == message.body
    assert len({m.lease for m in got}) == len(got)  # a token per delivery
    assert queue.cleanup(got) == len(got)
    with pytest.raises(TypeError, match="cannot put a body of type object"):
        queue.put(object())


def test_a_late_holder_cannot_settle_a_message_leased_again(pg: Database) -> None:
    queue = pg.queue(visibility_timeout=0.5, heartbeat=False, wait_time=0)
    other = pg.queue(visibility_timeout=30, heartbeat=False, wait_time=0)
    queue.put("contested")
    [first] = queue.get()
    late: list[PostgresMessage] = []
    wait_until(lambda: late.extend(other.get()) or late, timeout=10, message="lease expiry")
    [second] = late
    assert (second.id, second.attempts) == (first.id, 2) and second.lease != first.lease
    # The first holder wakes up late: nothing it does touches the message.
    assert queue.cleanup([first]) == 0
    assert queue.reject([first], error="late") == 0
    assert queue.release([first]) == 0
    assert queue.extend([first]) == 0
    assert queue.statistics().stale == 4
    assert queue.stats()["in_flight"] == 1  # still the second holder's
    assert other.cleanup([second]) == 1
    assert queue.stats() == dict.fromkeys(queue.stats(), 0)


def test_reject_backs_off_exponentially_then_dead_letters_and_redrive(pg: Database) -> None:
    queue = pg.queue(max_attempts=3, retry_delay=2.0, max_retry_delay=3.0, heartbeat=False)
    message_id = queue.put("poison")
    for attempt, backoff in ((1, 2.0), (2, 3.0)):  # 2 * 2**0, then min(2 * 2**1, 3)
        [message] = queue.get()
        assert message.attempts == attempt
        assert queue.reject([message], error=f"failure {attempt}") == 1
        assert queue.stats()["delayed"] == 1
        assert seconds_until_visible(pg, message_id) == pytest.approx(backoff, abs=0.5)
        pg.scalar(  # skip the wait: due now
            f'UPDATE "{pg.schema}".messages SET visible_at = now() WHERE id = %s', message_id
        )
    [message] = queue.get()
    assert message.attempts == 3
    assert queue.reject([message], error="failure 3") == 1  # the last attempt: dead
    assert queue.stats() == {
        "depth": 0,
        "visible": 0,
        "delayed": 0,
        "in_flight": 0,
        "dead_letters": 1,
    }
    [dead] = queue.dead_letters()
    assert isinstance(dead, DeadLetter)
    assert (dead.id, dead.body, dead.attempts, dead.last_error) == (
        message_id,
        "poison",
        3,
        "failure 3",
    )
    assert queue.redrive([12345]) == 0  # not a dead letter of this queue
    assert queue.redrive() == 1
    [back] = queue.get()
    assert (back.id, back.body, back.attempts) == (message_id, "poison", 1)
    assert queue.dead_letters() == []


def test_release_returns_at_once_without_counting_the_attempt(pg: Database) -> None:
    queue = pg.queue(heartbeat=False, wait_time=0)
    ids = queue.put_many(["a", "b"])
    got = queue.get()
    assert queue.release(got) == 2
    again = queue.get()
    assert [(m.id, m.attempts) for m in again] == [(ids[0], 1), (ids[1], 1)]
    assert {m.lease for m in again}.isdisjoint(m.lease for m in got)


def test_a_message_whose_last_lease_expired_is_dead_lettered(pg: Database) -> None:
    queue = pg.queue(visibility_timeout=0.3, max_attempts=2, heartbeat=False, wait_time=0)
    queue.put("kills its consumer")
    seen: list[PostgresMessage] = []
    wait_until(
        lambda: seen.extend(queue.get()) or queue.stats()["dead_letters"] == 1,
        timeout=15,
        message="two expired leases, then the dead letters",
    )
    assert [m.attempts for m in seen] == [1, 2]
    [dead] = queue.dead_letters()
    assert dead.last_error == "lease expired on all 2 attempts"
    assert queue.statistics().dead_lettered == 1


def test_the_heartbeat_keeps_a_slow_handlers_lease(pg: Database) -> None:
    queue = pg.queue(visibility_timeout=1.5, wait_time=0)  # heartbeat on: the default
    other = pg.queue(visibility_timeout=1.5, wait_time=0, heartbeat=False)
    queue.put("slow")
    [message] = queue.get()
    deadline = time.monotonic() + 4.0  # past two lease lengths: it would have expired
    while time.monotonic() < deadline:
        assert other.get() == [], "a message under the heartbeat was leased again"
        time.sleep(0.05)
    assert queue.statistics().extended >= 4  # every 0.5 s (a third of the lease)
    assert queue.cleanup([message]) == 1
    assert queue.statistics().held == 0


def test_extend_by_hand(pg: Database) -> None:
    queue = pg.queue(visibility_timeout=1.0, heartbeat=False)
    message_id = queue.put("long")
    [message] = queue.get()
    assert queue.extend([message], timeout=60) == 1
    assert seconds_until_visible(pg, message_id) == pytest.approx(60, abs=2)
    with pytest.raises(ConfigurationError, match="timeout must be"):
        queue.extend([message], timeout=0)


def test_stats_and_purge(pg: Database) -> None:
    queue = pg.queue(heartbeat=False, max_messages=2, wait_time=0)
    other = pg.queue("other")
    other.put("not mine")
    queue.put_many(["a", "b", "c"])
    queue.put("later", delay=60)
    queue.get()
    assert queue.stats() == {
        "depth": 2,
        "visible": 1,
        "delayed": 1,
        "in_flight": 2,
        "dead_letters": 0,
    }
    assert queue.purge() == 4
    assert queue.stats()["depth"] == queue.stats()["in_flight"] == 0
    assert other.stats()["depth"] == 1  # another queue in the same tables is untouched


def test_a_group_hands_out_one_message_at_a_time_in_order(pg: Database) -> None:
    queue = pg.queue(heartbeat=False, wait_time=0, retry_delay=0.0)
    a = queue.put_many(["a1", "a2", "a3"], group="a")
    b = queue.put_many(["b1", "b2"], group="b")
    free = queue.put_many(["f1", "f2"])
    first = queue.get()
    assert [m.body for m in first] == ["a1", "b1", "f1", "f2"]  # heads of groups only
    assert queue.message_group(first[0]) == "a" and queue.message_group(first[2]) is None
    assert queue.get() == []  # a2 and b2 wait for their heads
    queue.reject([first[0]])  # a1 failed: it comes back first, a2 still waits
    queue.cleanup(first[1:])
    second = queue.get()
    assert [(m.id, m.attempts) for m in second] == [(a[0], 2), (b[1], 1)]
    queue.cleanup(second)
    third = queue.get()
    assert [m.id for m in third] == [a[1]]
    queue.release(third)
    assert [m.id for m in queue.get()] == [a[1]]
    assert free and b


def test_puts_into_one_group_commit_one_after_another(pg: Database) -> None:
    """The per-group lock that keeps ids in commit order, so get() is never fooled."""
    queue = pg.queue(heartbeat=False, wait_time=0)
    queue.stats()  # declared before the test's own transaction
    with pg.connect() as conn:
        conn.autocommit = False
        first = queue.put("first", group="g", connection=conn)  # not committed yet
        done: list[int] = []
        other = threading.Thread(target=lambda: done.append(queue.put("second", group="g")))
        other.start()
        wait_until(
            lambda: pg.scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND pid = ANY(%s)",
                pg.backends(),
            ),
            timeout=10,
            message="the second put waits for the group",
        )
        assert not done
        assert queue.put("elsewhere", group="h") > first  # other groups do not wait
        conn.commit()
        other.join(10)
    assert done and done[0] > first
    assert [m.body for m in queue.get()] == ["first", "elsewhere"]


def test_put_inside_the_callers_transaction(pg: Database) -> None:
    queue = pg.queue(heartbeat=False, wait_time=0)
    queue.stats()
    with pg.connect() as conn:
        conn.execute(f'CREATE TABLE "{pg.schema}".orders (id int)')
        with conn.transaction():
            conn.execute(f'INSERT INTO "{pg.schema}".orders VALUES (1)')
            queue.put({"order": 1}, connection=conn)
            assert queue.stats()["depth"] == 0  # not committed: nobody sees it
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute(f'INSERT INTO "{pg.schema}".orders VALUES (2)')
            queue.put_many([{"order": 2}], group="o", connection=conn)
            raise RuntimeError("the business transaction fails")
        queue.put({"order": 3}, group="o", connection=conn)  # autocommit: its own transaction
        orders = conn.execute(f'SELECT id FROM "{pg.schema}".orders').fetchall()
    assert orders == [(1,)]
    assert [m.body for m in queue.get()] == [{"order": 1}, {"order": 3}]
    with pytest.raises(TypeError, match=r"psycopg\.Connection"):
        queue.put("x", connection=object())  # type: ignore[arg-type]


def test_notify_wakes_a_waiting_get_long_before_the_poll_bound(pg: Database) -> None:
    waiting = pg.queue(wait_time=15, poll_interval=10, heartbeat=False)
    producer = pg.queue()
    got: list[PostgresMessage] = []
    reader = threading.Thread(target=lambda: got.extend(waiting.get()))
    reader.start()
    wait_until(lambda: pg.backends("query LIKE 'LISTEN%'"), timeout=10, message="listening")
    time.sleep(0.2)  # let get() look at the (empty) table and start waiting
    started = time.monotonic()
    producer.put("wake up")
    reader.join(15)
    assert [m.body for m in got] == ["wake up"]
    assert time.monotonic() - started < 5  # NOTIFY, not the 10 s poll
    assert waiting.statistics().notifications >= 1


def test_polling_only_needs_no_listen(pg: Database) -> None:
    queue = pg.queue(listen=False, wait_time=5, poll_interval=0.1, heartbeat=False)
    got: list[PostgresMessage] = []
    reader = threading.Thread(target=lambda: got.extend(queue.get()))
    reader.start()
    time.sleep(0.2)
    queue.put("found by polling")
    reader.join(10)
    assert [m.body for m in got] == ["found by polling"]
    assert not pg.backends("query LIKE 'LISTEN%'")
    assert not pg.backends("query LIKE '%pg_notify%'")  # listen=false sends no NOTIFY either


def test_get_waits_a_bounded_time(pg: Database) -> None:
    queue = pg.queue(wait_time=0.5, poll_interval=0.2)
    started = time.monotonic()
    assert queue.get() == []
    assert 0.4 <= time.monotonic() - started < 3


def test_declare_false_needs_the_tables(pg: Database) -> None:
    locked_down = pg.queue(declare=False)
    with pytest.raises(ConfigurationError, match=r"do not exist; apply .*schema\.sql"):
        locked_down.stats()
    assert pg.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = %s", pg.schema) == 0
    pg.queue().stats()  # declares
    assert locked_down.stats()["depth"] == 0


def test_concurrent_first_uses_declare_once(pg: Database) -> None:
    queues = [pg.queue(f"q{n}") for n in range(6)]
    barrier = threading.Barrier(len(queues))
    errors: list[BaseException] = []

    def first_use(queue: PostgresQueue) -> None:
        barrier.wait()
        try:
            queue.put("hello")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(q,)) for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert pg.scalar(f'SELECT count(*) FROM "{pg.schema}".schema_version') == 1


def test_a_newer_layout_is_refused(pg: Database) -> None:
    pg.queue().stats()
    pg.scalar(f'UPDATE "{pg.schema}".schema_version SET version = 99')
    with pytest.raises(ConfigurationError, match="layout version 99"):
        pg.queue().stats()


def test_the_queue_pickles_by_its_settings(pg: Database) -> None:
    queue = pg.queue(visibility_timeout=7, max_attempts=9, listen=False)
    copy = pickle.loads(pickle.dumps(queue))
    pg.queues.append(copy)
    assert copy.settings() == queue.settings()
    copy.put("from the copy")
    assert [m.body for m in queue.get()] == ["from the copy"]


def test_a_closed_queue_refuses_work(pg: Database) -> None:
    queue = pg.queue()
    queue.put("x")
    queue.close()
    queue.close()  # twice is fine
    with pytest.raises(ConsumerStateError, match="closed"):
        queue.get()


def test_a_poison_message_ends_in_dead_letters_and_redrive_brings_it_back(
    pg: Database,
) -> None:
    queue = pg.queue(max_attempts=3, retry_delay=0.0, wait_time=0.2, heartbeat=False)
    good = queue.put_many([f"ok-{n}" for n in range(10)])
    poison = queue.put("poison")
    handled: list[str] = []

    def handler(messages: Iterator[PostgresMessage]) -> None:
        for message in messages:
            if message.body == "poison":
                raise ValueError("cannot digest poison")
            handled.append(message.body)

    with Consumer(queue, handler, max_workers=1, max_handlers=2):
        wait_until(lambda: queue.stats()["dead_letters"] == 1, timeout=30)
        wait_until(lambda: queue.stats()["depth"] + queue.stats()["in_flight"] == 0, timeout=30)
    assert sorted(handled) == sorted(f"ok-{n}" for n in range(10)) and len(good) == 10
    [dead] = queue.dead_letters()
    assert (dead.id, dead.attempts) == (poison, 3)
    assert dead.last_error is not None and "ValueError: cannot digest poison" in dead.last_error
    assert queue.redrive([poison]) == 1
    [back] = queue.get()
    assert (back.id, back.attempts, back.body) == (poison, 1, "poison")


def test_a_bad_statement_is_an_error_naming_the_queue(pg: Database) -> None:
    queue = pg.queue()
    queue.stats()
    pg.scalar(f'DROP TABLE "{pg.schema}".messages CASCADE')
    from queue_consumer.adapters.postgres import PostgresQueueError

    with pytest.raises(PostgresQueueError, match=r"get failed for PostgreSQL queue 'jobs'"):
        queue.get()
    assert psycopg is not None


def test_closing_the_queue_ends_a_waiting_get(pg: Database) -> None:
    queue = pg.queue(wait_time=15, poll_interval=10)
    queue.stats()
    got: list[list[PostgresMessage]] = []
    reader = threading.Thread(target=lambda: got.append(queue.get()))
    reader.start()
    wait_until(lambda: pg.backends("query LIKE 'LISTEN%'"), timeout=10, message="listening")
    started = time.monotonic()
    queue.close()
    reader.join(10)
    assert got == [[]] and time.monotonic() - started < 5


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "polling"])
def test_interrupt_ends_a_waiting_get_at_once(pg: Database, listen: bool) -> None:
    queue = pg.queue(wait_time=15, poll_interval=10, listen=listen)
    queue.stats()
    got: list[list[PostgresMessage]] = []
    reader = threading.Thread(target=lambda: got.append(queue.get()))
    reader.start()
    time.sleep(0.3)  # waiting
    started = time.monotonic()
    queue.interrupt()
    reader.join(10)
    assert got == [[]] and time.monotonic() - started < 5
    queue.put("next")  # the queue goes on working
    assert [m.body for m in queue.get()] == ["next"]


def test_a_permanent_failure_goes_straight_to_the_dead_letters(pg: Database) -> None:
    from queue_consumer import PermanentFailure

    queue = pg.queue(max_attempts=5, wait_time=0.2)
    hopeless = queue.put("hopeless")
    fine = queue.put("fine")

    def handler(messages: Iterator[PostgresMessage]) -> None:
        for message in messages:
            if message.body == "hopeless":
                raise PermanentFailure("malformed, retrying cannot help")

    with Consumer(queue, handler, max_workers=1, max_handlers=1):
        wait_until(lambda: queue.stats()["dead_letters"] == 1, timeout=30)
        wait_until(lambda: queue.stats()["depth"] + queue.stats()["in_flight"] == 0, timeout=30)
    [dead] = queue.dead_letters()
    assert (dead.id, dead.attempts) == (hopeless, 1)  # its other 4 attempts were not spent
    assert dead.last_error is not None and "malformed" in dead.last_error
    assert fine not in [d.id for d in queue.dead_letters()]
    # And by hand, fenced like every settle:
    queue.put("by hand")
    [message] = queue.get()
    assert queue.dead_letter([message], error="no") == 1
    assert queue.dead_letter([message]) == 0
