"""Connections cut from the server side (pg_terminate_backend) while the queue works: the
LISTEN connection and the pooled ones come back by themselves, and nothing is lost."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

from postgres_helpers import Database, pg

from queue_consumer import Consumer
from queue_consumer.adapters.postgres import PostgresMessage, PostgresQueue
from queue_consumer.testing import wait_until

__all__ = ["pg"]

LISTENER = "query LIKE 'LISTEN%'"


def test_a_pooled_connection_killed_is_replaced_and_the_statement_retried(
    pg: Database,
) -> None:
    queue = pg.queue(heartbeat=False, wait_time=0)
    queue.put("before")
    assert pg.terminate() >= 1  # every connection of the pool, idle in it
    queue.put("after")  # right away: on a dead connection, retried on a fresh one
    assert [m.body for m in queue.get()] == ["before", "after"]
    assert queue.statistics().reconnects >= 1


def test_a_listener_reconnect_wakes_waiting_gets(pg: Database) -> None:
    waiting = pg.queue(wait_time=15, poll_interval=10, heartbeat=False)
    waiting.stats()
    got: list[PostgresMessage] = []
    reader = threading.Thread(target=lambda: got.extend(waiting.get()))
    reader.start()
    wait_until(lambda: pg.backends(LISTENER), timeout=10, message="listening")
    time.sleep(0.3)  # get() has looked at the empty table and waits
    # A message arrives while NOTIFY cannot tell (as if sent while the listener was down).
    pg.scalar(f"INSERT INTO \"{pg.schema}\".messages (queue, kind, body) VALUES ('jobs', 's', 'x')")
    started = time.monotonic()
    assert pg.terminate(LISTENER) == 1
    reader.join(15)
    assert [m.body for m in got] == ["x"]
    assert time.monotonic() - started < 5  # the reconnect woke it, not the 10 s poll
    wait_until(lambda: waiting.statistics().listener_reconnects == 1, timeout=10)
    # And NOTIFY works again on the new connection.
    wait_until(lambda: pg.backends(LISTENER), timeout=10, message="listening again")
    reader = threading.Thread(target=lambda: got.extend(waiting.get()))
    reader.start()
    time.sleep(0.3)
    pg.queue().put("y")
    reader.join(15)
    assert [m.body for m in got] == ["x", "y"]


def test_consuming_through_terminated_connections_loses_nothing(pg: Database) -> None:
    total = 400
    queue = pg.queue(wait_time=1.0, poll_interval=5, visibility_timeout=30)
    # The producer has a name of its own: only the consumer's connections are cut.
    producer = PostgresQueue(pg.conninfo + "-producer", "jobs", schema=pg.schema, heartbeat=False)
    pg.queues.append(producer)
    handled: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(messages: Iterator[PostgresMessage]) -> None:
        for message in messages:
            time.sleep(0.002)
            with lock:
                handled[message.body] += 1

    def produce() -> None:
        for start in range(0, total, 10):
            producer.put_many([f"m{n}" for n in range(start, start + 10)])
            time.sleep(0.02)

    with Consumer(queue, handler, max_workers=2, max_handlers=4, messages_bulk_size=5) as c:
        feeder = threading.Thread(target=produce)
        feeder.start()
        wait_until(lambda: len(handled) >= 80, timeout=30, message="under way")
        wait_until(lambda: pg.backends(LISTENER), timeout=10, message="listening")
        assert pg.terminate(LISTENER) == 1
        wait_until(lambda: len(handled) >= 160, timeout=30, message="on after the listener")
        wait_until(lambda: pg.backends(LISTENER), timeout=10, message="listening again")
        killed = pg.terminate()  # the pool's connections, and the new listener's
        assert killed >= 2
        feeder.join(60)
        wait_until(lambda: len(handled) == total, timeout=60, message=f"{len(handled)}")
        wait_until(lambda: queue.stats()["depth"] + queue.stats()["in_flight"] == 0, timeout=30)
        stats = c.statistics()
    assert set(handled) == {f"m{n}" for n in range(total)}  # nothing lost
    twice = sum(handled.values()) - total
    print(f"killed {killed} connections; {twice} handled twice; {stats.errors} get/settle errors")
    assert queue.statistics().listener_reconnects >= 2
    assert queue.statistics().reconnects >= 1
