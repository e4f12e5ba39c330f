"""JetStreamQueue against the machine's nats-server (JetStream on 4222): the contract,
settling, dead letters and redrive, the heartbeat, hand-back on close, URLs and secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable

import pytest

from queue_consumer import open_queue
from queue_consumer.errors import ConfigurationError
from queue_consumer.testing import wait_until

if __package__:
    from .nats_server import SHARED, MakeQueue, delete_streams, make_queue, shared_server, unique
else:
    from nats_server import SHARED, MakeQueue, delete_streams, make_queue, shared_server, unique

import nats

from queue_consumer.adapters.nats import (
    DeadLetter,
    JetStreamError,
    JetStreamMessage,
    JetStreamQueue,
    from_url,
)

__all__ = ["make_queue", "shared_server"]  # fixtures, used by name


def get_all(queue: JetStreamQueue, count: int, timeout: float = 10) -> list[JetStreamMessage]:
    got: list[JetStreamMessage] = []

    def more() -> bool:
        got.extend(queue.get())
        return len(got) >= count

    wait_until(more, timeout, message=f"{count} messages")
    return got


def nothing_for(queue: JetStreamQueue, seconds: float) -> None:
    """get() returns nothing for ``seconds`` (each get waits at most its wait_time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert queue.get() == []


def test_put_get_cleanup_round_trip_keeps_body_types(make_queue: MakeQueue) -> None:
    queue = make_queue()
    sequences = queue.put_many(["text", b"\x00raw", {"n": [1, 2]}, 7])
    assert sequences == [1, 2, 3, 4]
    messages = get_all(queue, 4)
    assert [m.body for m in messages] == ["text", b"\x00raw", {"n": [1, 2]}, 7]
    first = messages[0]
    assert (first.id, first.stream_seq, first.delivery_count) == (1, 1, 1)
    assert first.subject == queue.subject and first.stream == queue.stream
    assert first.reply.startswith(f"$JS.ACK.{queue.stream}.{queue.consumer}.1.1.")
    copy = pickle.loads(pickle.dumps(first))
    assert copy == first and copy.body == first.body and copy.headers == first.headers
    assert queue.cleanup(messages) == 4
    nothing_for(queue, 1.0)
    stats = queue.stats()
    assert (stats["depth"], stats["in_flight"], stats["stream_messages"]) == (0, 0, 0)


def test_a_message_from_another_publisher_is_raw_bytes(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.put("first")  # creates the stream

    async def publish() -> None:
        nc = await nats.connect(SHARED)
        await nc.jetstream().publish(queue.subject, b'{"not": "tagged"}')
        await nc.close()

    asyncio.run(publish())
    bodies = [m.body for m in get_all(queue, 2)]
    assert bodies == ["first", b'{"not": "tagged"}']


def test_reject_backs_off_then_dead_letters_then_redrive(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=3, retry_delay=0.3, max_retry_delay=0.3, heartbeat=False)
    queue.put_many(["poison", "fine"])
    poison, fine = get_all(queue, 2)
    queue.cleanup([fine])
    rejected_at = time.monotonic()
    queue.reject([poison], error="Traceback ...\nValueError: bad\n")
    [again] = get_all(queue, 1)
    assert time.monotonic() - rejected_at >= 0.25, "the nak delay was not applied"
    assert again.stream_seq == poison.stream_seq and again.delivery_count == 2
    queue.reject([again], error="second")
    [last] = get_all(queue, 1)
    assert last.delivery_count == 3
    queue.reject([last], error="Traceback (most recent call last):\nValueError: bad\n")
    nothing_for(queue, 1.0)
    stats = queue.stats()
    assert stats["dead_letters"] == 1 and stats["in_flight"] == 0 and stats["depth"] == 0
    [dead] = queue.dead_letters()
    assert isinstance(dead, DeadLetter)
    assert dead.body == "poison" and dead.attempts == 3
    assert dead.last_error == "Traceback (most recent call last):\nValueError: bad\n"
    assert (dead.subject, dead.stream_seq) == (queue.subject, poison.stream_seq)
    assert queue.statistics().dead_lettered == 1
    assert pickle.loads(pickle.dumps(dead)) == dead

    assert queue.redrive() == 1
    assert queue.dead_letters() == [] and queue.stats()["dead_letters"] == 0
    [back] = get_all(queue, 1)
    assert back.body == "poison" and back.delivery_count == 1  # a new message: count reset
    assert back.headers is not None and "QC-Error" not in back.headers
    queue.cleanup([back])


def test_redrive_by_id_and_dead_letter_copies_are_deduplicated(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=1, heartbeat=False)
    queue.put_many(["a", "b"])
    a, b = get_all(queue, 2)
    queue.reject([a, b], error="boom")
    # A retried dead-letter move (the term was lost, say) stores no second copy.
    queue.reject([a], error="boom again")
    dead = queue.dead_letters()
    assert sorted(d.body for d in dead) == ["a", "b"]
    wanted = next(d.id for d in dead if d.body == "b")
    assert queue.redrive([wanted]) == 1
    assert [d.body for d in queue.dead_letters()] == ["a"]
    assert [m.body for m in get_all(queue, 1)] == ["b"]
    assert queue.purge(dead_letters=True) >= 1
    assert queue.dead_letters() == []


def test_release_comes_back_at_once_and_jetstream_counts_it(make_queue: MakeQueue) -> None:
    queue = make_queue(ack_wait=30, heartbeat=False)
    queue.put("x")
    [first] = get_all(queue, 1)
    released_at = time.monotonic()
    queue.release([first])
    [again] = get_all(queue, 1, timeout=5)
    assert time.monotonic() - released_at < 5  # not after ack_wait
    assert again.delivery_count == 2  # JetStream has no uncounted return
    queue.cleanup([again])


def test_unsettled_message_comes_back_after_ack_wait(make_queue: MakeQueue) -> None:
    queue = make_queue(ack_wait=1, heartbeat=False)
    queue.put("x")
    [first] = get_all(queue, 1)
    [again] = get_all(queue, 1, timeout=10)
    assert again.stream_seq == first.stream_seq and again.delivery_count == 2
    queue.cleanup([again])


def test_heartbeat_keeps_a_slow_message_held(make_queue: MakeQueue) -> None:
    stream = unique()
    holder = make_queue(stream, ack_wait=1)  # heartbeat on by default: every 0.5 s
    other = make_queue(stream, ack_wait=1, wait_time=0.2)
    holder.put("slow")
    [message] = get_all(holder, 1)
    nothing_for(other, 3.0)  # three ack_waits: without "in progress" it would be back
    assert holder.statistics().extended >= 3
    assert holder.statistics().held == 1
    holder.cleanup([message])
    assert holder.statistics().held == 0
    nothing_for(other, 1.5)


def test_extend_sends_in_progress(make_queue: MakeQueue) -> None:
    stream = unique()
    holder = make_queue(stream, ack_wait=1, heartbeat=False)
    other = make_queue(stream, ack_wait=1, wait_time=0.2)
    holder.put("slow")
    [message] = get_all(holder, 1)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert holder.extend([message]) == 1
        assert other.get() == []
    holder.cleanup([message])


def test_a_message_settled_by_another_queue_object(make_queue: MakeQueue) -> None:
    """Process mode: a message pickled back from a child is settled by the parent's queue;
    settling needs only the reply subject."""
    stream = unique()
    reader = make_queue(stream, heartbeat=False)
    settler = make_queue(stream, heartbeat=False)
    reader.put_many(["a", "b"])
    messages = [pickle.loads(pickle.dumps(m)) for m in get_all(reader, 2)]
    assert settler.cleanup(messages) == 2
    assert settler.statistics().unknown_settles == 2  # not its deliveries: counted
    wait_until(lambda: reader.stats()["in_flight"] == 0, timeout=5)
    assert reader.stats()["stream_messages"] == 0


def test_delivered_after_close_is_handed_back_at_once(make_queue: MakeQueue) -> None:
    """A pull request still open at the server delivers after the consumer stopped reading:
    close() naks that message, so another consumer gets it now, not after ack_wait."""
    stream = unique()
    queue = make_queue(stream, ack_wait=60, heartbeat=False)
    queue.put("warm-up")
    queue.cleanup(get_all(queue, 1))
    session = queue._session
    inbox = session._inboxes[threading.current_thread()]

    async def open_pull() -> None:  # what a get() cut short leaves behind
        assert session.nc is not None
        request = json.dumps({"batch": 1, "expires": 30_000_000_000}).encode()
        await session.nc.publish(session._next, request, reply=inbox.subject)
        await session.nc.flush()

    queue._loop.run(open_pull(), 5)
    queue.put("late")
    wait_until(lambda: inbox.pending_msgs >= 1, timeout=5, message="the late delivery arrived")
    queue.close()
    assert queue.statistics().handed_back == 1
    other = make_queue(stream, ack_wait=60, heartbeat=False)
    [message] = get_all(other, 1, timeout=5)  # well before ack_wait
    assert message.body == "late" and message.delivery_count == 2
    other.cleanup([message])


def test_stats_counts(make_queue: MakeQueue) -> None:
    queue = make_queue(heartbeat=False, max_messages=2)
    queue.put_many([f"s{i}" for i in range(5)])
    held = get_all(queue, 2)
    stats = queue.stats()
    assert stats["depth"] == 3 and stats["in_flight"] == 2 and stats["dead_letters"] == 0
    assert {"redelivered", "waiting_pulls", "stream_messages"} <= set(stats)
    queue.cleanup(held)
    assert queue.stats()["in_flight"] == 0
    assert queue.purge() == 3
    assert queue.stats()["depth"] == 0


def test_binds_an_existing_consumer_and_follows_its_ack_wait(make_queue: MakeQueue) -> None:
    stream = unique()
    first = make_queue(stream, ack_wait=7)
    first.put("x")
    second = make_queue(stream, ack_wait=30)
    [message] = get_all(second, 1)
    assert second.ack_wait == pytest.approx(7)
    second.cleanup([message])


def test_declare_false_needs_the_stream(shared_server: str) -> None:
    name = unique()
    queue = JetStreamQueue(name, servers=shared_server, declare=False, wait_time=0)
    with queue, pytest.raises(JetStreamError, match="declare=false"):
        queue.get()
    # It created nothing.
    with JetStreamQueue(name, servers=shared_server, wait_time=0) as probe:
        probe.put("created now")
    delete_streams(shared_server, [name, f"{name}_DEAD"])


def test_closed_queue_refuses_get(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.close()
    queue.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        queue.get()


def test_queue_pickles_by_its_settings(make_queue: MakeQueue) -> None:
    queue = make_queue(ack_wait=5, max_messages=3)
    copy = pickle.loads(pickle.dumps(queue))
    try:
        assert copy.settings() == queue.settings()
        queue.put_many(["p1", "p2"])
        assert {m.body for m in get_all(copy, 2)} == {"p1", "p2"}
    finally:
        copy.close()


# -- URLs and settings ---------------------------------------------------------------


def test_url_options() -> None:
    url = (
        "nats://127.0.0.1:4222,127.0.0.1:4223?stream=ORDERS&subject=orders.new&consumer=w"
        "&ack_wait=12&max_messages=5&wait=1.5&max_attempts=4&retry_delay=0.5&max_retry_delay=9"
        "&handler_slots=8&dead_letter_subject=orders.dead&declare=false&heartbeat=off"
        "&storage=memory&request_timeout=3&max_reconnect_attempts=10&name=svc"
    )
    queue = open_queue(url)
    assert isinstance(queue, JetStreamQueue)
    s = queue.settings()
    assert s["servers"] == ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
    assert (s["stream"], s["subject"], s["consumer"]) == ("ORDERS", "orders.new", "w")
    assert (s["ack_wait"], s["max_messages"], s["wait_time"]) == (12.0, 5, 1.5)
    assert s["max_ack_pending"] == 8 * 5  # derived from the handler slots
    assert (s["dead_letter_stream"], s["dead_letter_subject"]) == ("ORDERS_DEAD", "orders.dead")
    assert (s["declare"], s["heartbeat"], s["storage"], s["tls"]) == (False, False, "memory", False)
    queue.close()  # never connected: nothing to do


def test_defaults_from_the_stream_name() -> None:
    queue = from_url("nats://localhost?stream=JOBS")
    s = queue.settings()
    assert s["servers"] == ["nats://localhost:4222"]
    names = (s["subject"], s["consumer"], s["dead_letter_stream"])
    assert names == ("JOBS", "JOBS_workers", "JOBS_DEAD")
    assert s["wait_time"] <= 5 and s["heartbeat"] is True and s["declare"] is True
    queue.close()


def test_tls_through_its_scheme_or_option() -> None:
    queue = open_queue("nats+tls://nats.example:4222?stream=S")
    assert queue.settings()["tls"] is True
    assert queue._session._tls is not None
    queue.close()
    assert from_url("nats://h?stream=S&tls=true").settings()["tls"] is True
    with pytest.raises(ConfigurationError, match="unknown queue URL scheme 'tls'"):
        open_queue("tls://h:4222?stream=S")
    with pytest.raises(ConfigurationError, match="contradict"):
        from_url("nats+tls://h?stream=S&tls=false")
    with pytest.raises(ConfigurationError, match="TLS files"):
        from_url("nats+tls://h?stream=S&tls_ca=/nonexistent/ca.pem")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("stream=S&colour=blue", "unknown option 'colour'"),
        ("stream=S&ack_wait=soon", "ack_wait must be"),
        ("stream=S&max_messages=0", "max_messages must be"),
        ("stream=S&wait=120", "wait must be"),
        ("stream=S&declare=maybe", "declare must be"),
        ("stream=S&storage=tape", "storage must be"),
        ("stream=a.b", "stream must be a name"),
        ("stream=S&subject=a..b", "subject must be a NATS subject"),
        ("stream=S&stream=T", "given twice"),
        ("subject=x", "needs \\?stream=NAME"),
        ("stream=S&retry_delay=5&max_retry_delay=1", "max_retry_delay"),
        ("stream=S&token_file=/t&creds=/c", "one of creds"),
    ],
)
def test_bad_url_options_name_the_option(query: str, error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        from_url(f"nats://127.0.0.1:4222?{query}")


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ConfigurationError, match="ack_wait"):
        JetStreamQueue("S", ack_wait=0)
    with pytest.raises(ConfigurationError, match="servers"):
        JetStreamQueue("S", servers="http://h")
    with pytest.raises(TypeError):
        JetStreamQueue("S", colour="blue")


def test_passwords_and_tokens_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-pw"
    port = "1"  # nothing listens there: connecting fails
    for url in (
        f"nats://ann:{secret}@127.0.0.1:{port}?stream=S&connect_timeout=0.5",
        f"nats://{secret}@127.0.0.1:{port}?stream=S&connect_timeout=0.5",
    ):
        queue = from_url(url)
        assert secret not in repr(queue) and "***@127.0.0.1" in repr(queue)
        with pytest.raises(JetStreamError) as failure:
            queue.put("x")
        assert secret not in str(failure.value)
        queue.close()
    with pytest.raises(ConfigurationError) as bad:
        from_url(f"nats://ann:{secret}@127.0.0.1:4222/path?stream=S")
    assert secret not in str(bad.value)
    assert secret not in caplog.text


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from queue_consumer import _urls

    prefixes = ("nats.", "queue_consumer.adapters.nats")
    for name in [m for m in sys.modules if m == "nats" or m.startswith(prefixes)]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nats", None)  # import nats -> ModuleNotFoundError
    with pytest.raises(ConfigurationError, match=r"queue-consumer\[nats\]"):
        _urls.open_queue("nats://127.0.0.1:4222?stream=S")


def test_several_queues_creating_one_stream_at_once(make_queue: MakeQueue) -> None:
    stream = unique()
    queues = [make_queue(stream, ack_wait=5 + i) for i in range(4)]  # differing settings too
    errors: list[BaseException] = []

    def first_use(queue: JetStreamQueue) -> None:
        try:
            queue.put(f"from {id(queue)}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(q,)) for q in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert queues[0].stats()["depth"] == 4


def test_interrupt_ends_a_waiting_get(make_queue: MakeQueue) -> None:
    queue = make_queue(wait_time=30)
    queue.put("first")
    queue.cleanup(get_all(queue, 1))  # connected, inbox made
    result: list[list[JetStreamMessage]] = []
    put = threading.Event()

    def poll() -> None:  # one polling thread, as a consumer's worker
        result.append(queue.get())
        put.wait(10)
        result.append(get_all(queue, 1, timeout=10))

    waiting = threading.Thread(target=poll)
    started = time.monotonic()
    waiting.start()
    wait_until(lambda: queue.stats()["waiting_pulls"] >= 1, timeout=10, message="a pull waits")
    queue.interrupt()
    wait_until(lambda: bool(result), timeout=10, message="get() returned")
    assert result == [[]] and time.monotonic() - started < 10
    queue.put("after")  # the interrupted pull is still open at the server: it gets this
    put.set()
    waiting.join(15)
    assert [m.body for m in result[1]] == ["after"]


def test_dead_letter_now_whatever_the_attempts(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=5, heartbeat=False)
    queue.put("never")
    [message] = get_all(queue, 1)
    assert queue.dead_letter([message], error="PermanentFailure: not an order") == 1
    [dead] = queue.dead_letters()
    assert (dead.body, dead.attempts, dead.last_error) == (
        "never",
        1,
        "PermanentFailure: not an order",
    )
    assert queue.stats()["in_flight"] == 0


def test_what_arrived_for_an_ended_thread_goes_to_the_next_new_one(make_queue: MakeQueue) -> None:
    queue = make_queue(wait_time=30, ack_wait=60, heartbeat=False)
    queue.put("first")
    got: list[list[JetStreamMessage]] = []
    errors: list[BaseException] = []

    def polling(target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the test, not by a later one
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def poll_once() -> None:  # a worker that is interrupted, then ends
        got.append(queue.get())
        got.append(queue.get())

    def joined(thread: threading.Thread, what: str, timeout: float = 20) -> None:
        thread.join(timeout)
        assert not thread.is_alive(), f"{what}: still in get() after {timeout}s"
        assert not errors, f"{what}: {errors!r}"

    threads: list[threading.Thread] = []
    try:
        threads.append(worker := polling(poll_once))
        # Its first get() has returned "first" (a no-wait pull of 10 that got 1 stays among
        # the consumer's waiting pulls until the server ends it): the waiting pull now is
        # the second get()'s lingering one.
        wait_until(
            lambda: len(got) == 1 and queue.stats()["waiting_pulls"] >= 1,
            timeout=20,
            message="the second get() waits",
        )
        assert [m.body for m in got[0]] == ["first"]
        queue.interrupt()
        joined(worker, "the interrupted worker")
        assert got[1] == []
        queue.put("stranded")  # delivered to the ended thread's inbox by its open pull
        wait_until(lambda: queue.stats()["depth"] == 0, timeout=20, message="delivered to it")
        threads.append(revived := polling(lambda: got.append(get_all(queue, 1, timeout=20))))
        joined(revived, "the revived worker", timeout=30)
        assert [m.body for m in got[-1]] == ["stranded"]  # not after ack_wait (60 s)
    finally:  # no thread of a failed test outlives it
        queue.interrupt()
        for thread in threads:
            thread.join(35)
        assert not any(t.is_alive() for t in threads), "a polling thread outlived the test"


def test_an_interrupt_between_two_gets_ends_the_next_wait(make_queue: MakeQueue) -> None:
    queue = make_queue(wait_time=30, heartbeat=False)
    queue.put("one")
    assert [m.body for m in get_all(queue, 1)] == ["one"]  # this thread's inbox exists
    queue.interrupt()  # no get() of this thread is waiting now
    started = time.monotonic()
    assert queue.get() == []
    assert time.monotonic() - started < 15  # not its wait_time (30 s)


def test_a_late_settle_of_an_expired_delivery_is_skipped(make_queue: MakeQueue) -> None:
    queue = make_queue(ack_wait=1, heartbeat=False)
    queue.put("late")
    [first] = get_all(queue, 1)
    [second] = get_all(queue, 1, timeout=10)  # after the first delivery's ack_wait
    assert second.delivery_count == 2
    assert queue.cleanup([first]) == 0  # JetStream would apply it: the adapter does not
    assert queue.reject([first]) == 0 and queue.release([first]) == 0
    assert queue.statistics().late_settles == 3
    assert queue.stats()["in_flight"] == 1  # still held by the second delivery
    assert queue.cleanup([second]) == 1
