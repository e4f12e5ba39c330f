"""RabbitMQQueue on the local RabbitMQ: the contract, options, dead letters, shutdown order."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rabbitmq_server import AMQP_URL, LeaseLike, make_queue, rabbit, unique

from queue_consumer import Consumer, open_queue
from queue_consumer.adapters.rabbitmq import (
    RabbitMQError,
    RabbitMQMessage,
    RabbitMQQueue,
    from_url,
)
from queue_consumer.errors import ConfigurationError, PermanentFailure
from queue_consumer.testing import check_queue_contract, wait_until

__all__ = ["make_queue", "rabbit"]  # fixtures

MakeQueue = Callable[..., RabbitMQQueue]


def get_n(queue: RabbitMQQueue, n: int, timeout: float = 10) -> list[RabbitMQMessage]:
    got: list[RabbitMQMessage] = []
    wait_until(lambda: got.extend(queue.get()) or len(got) >= n, timeout, message=f"{n} messages")
    return got


def test_contract_quorum(make_queue: MakeQueue) -> None:
    # The classic queue's check is in test_conformance.py, with every shipped queue's.
    queue = make_queue(queue_type="quorum", max_attempts=20, wait_time=0.2)
    lease_like = LeaseLike(queue)
    # Both queue types count a release: quorum in x-delivery-count (before 4.3), classic
    # by the redelivered flag.
    check_queue_contract(lease_like, lease_like.put, timeout=30, release_counts=True)
    assert queue.stats()["invalid_receipts"] >= 1  # the late holder's cleanup, dropped


def test_interrupt_ends_a_waiting_get(make_queue: MakeQueue) -> None:
    queue = make_queue(wait_time=10)
    queue.get()  # consuming: the next get() waits for a delivery
    import threading

    returned: list[float] = []
    thread = threading.Thread(target=lambda: returned.append(len(queue.get())))
    thread.start()
    time.sleep(0.2)  # let it wait (a shorter sleep only makes the check weaker)
    started = time.monotonic()
    queue.interrupt()
    thread.join(5)
    assert returned == [0] and time.monotonic() - started < 2


def test_bodies_headers_and_pickling(make_queue: MakeQueue) -> None:
    queue = make_queue()
    bodies: list[Any] = ["text", b"\x00raw", {"n": 1, "list": [1, 2]}, 7, None]
    ids = queue.put_many(bodies, headers={"traceparent": "00-abc-def-01"})
    messages = get_n(queue, len(bodies))
    assert [m.body for m in messages] == bodies
    assert [m.id for m in messages] == ids
    for message in messages:
        assert message.delivery_count == 1
        assert message.headers["traceparent"] == "00-abc-def-01"
        copy = pickle.loads(pickle.dumps(message))
        assert copy == message and copy.body == message.body
    queue.cleanup(messages)
    wait_until(lambda: queue.stats()["held"] == 0)
    assert queue.stats()["depth"] == 0


def test_release_is_back_at_once_counted_once_on_classic(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.put("m")
    [message] = get_n(queue, 1)
    queue.release([message])
    [again] = get_n(queue, 1)
    assert again.body == "m" and again.redelivered
    # A classic queue says only "redelivered": that is one more delivery, however many.
    assert again.delivery_count == 2
    queue.release([again])
    [third] = get_n(queue, 1)
    assert third.delivery_count == 2
    queue.cleanup([third])


def test_quorum_counts_returns(make_queue: MakeQueue) -> None:
    queue = make_queue(queue_type="quorum")
    queue.put("m")
    [message] = get_n(queue, 1)
    queue.release([message])
    [again] = get_n(queue, 1)
    # RabbitMQ before 4.3 counts a nack with requeue in x-delivery-count (see the README).
    assert again.delivery_count == 2
    queue.cleanup([again])


def test_reject_backs_off_through_hold_queues(make_queue: MakeQueue) -> None:
    queue = make_queue(retry_delay=0.3, max_retry_delay=0.3, max_attempts=3)
    queue.put("m")
    [first] = get_n(queue, 1)
    rejected_at = time.monotonic()
    queue.reject([first], error="Traceback: boom")
    stats = queue.stats()
    assert stats["delayed"] == 1 and stats["visible"] == 0 and stats["depth"] == 1
    [second] = get_n(queue, 1)
    assert time.monotonic() - rejected_at >= 0.25  # the hold queue's TTL
    assert second.delivery_count == 2 and second.id == first.id
    assert second.headers["x-qc-error"] == "Traceback: boom"
    queue.cleanup([second])


def test_poison_to_dead_letters_and_redrive(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=3)
    [poison_id] = queue.put_many(["poison"])
    queue.put("fine")
    seen: list[int] = []

    def handler(messages: Iterator[RabbitMQMessage]) -> None:
        for message in messages:
            if message.body == "poison":
                seen.append(message.delivery_count)
                raise RuntimeError("poison")

    with Consumer(queue, handler, max_workers=1, max_handlers=2, messages_bulk_size=1):
        wait_until(lambda: queue.stats()["dead_letters"] == 1, 20, message="dead-lettered")
    assert seen == [1, 2, 3]
    [letter] = queue.dead_letters()
    assert letter.id == poison_id and letter.body == "poison" and letter.attempts == 3
    assert letter.last_error is not None and "RuntimeError: poison" in letter.last_error
    assert queue.dead_letters() == [letter]  # reading puts them back
    assert queue.redrive(["no-such-id"]) == 0
    assert queue.redrive() == 1
    [back] = get_n(queue, 1)
    assert back.body == "poison" and back.delivery_count == 1 and back.id == poison_id
    queue.cleanup([back])
    stats = queue.stats()
    assert stats["dead_letters"] == 0 and stats["dead_lettered"] == 1


def test_permanent_failure_is_dead_lettered_at_once(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=5)
    queue.put("bad")

    def handler(messages: Iterator[RabbitMQMessage]) -> None:
        for message in messages:
            raise PermanentFailure(f"never: {message.body}")

    with Consumer(queue, handler, max_workers=1, max_handlers=1):
        wait_until(lambda: queue.stats()["dead_letters"] == 1, 20, message="dead-lettered")
    [letter] = queue.dead_letters()
    assert letter.attempts == 1 and "never: bad" in (letter.last_error or "")


def test_retry_requeue_on_quorum(make_queue: MakeQueue) -> None:
    queue = make_queue(queue_type="quorum", retry="requeue", max_attempts=2)
    queue.put("m")
    [first] = get_n(queue, 1)
    queue.reject([first])
    [second] = get_n(queue, 1)
    assert second.delivery_count == 2
    queue.reject([second])
    wait_until(lambda: queue.stats()["dead_letters"] == 1)


def test_retry_requeue_needs_quorum(rabbit: str) -> None:
    with pytest.raises(ConfigurationError, match="quorum"):
        RabbitMQQueue(rabbit, unique(), retry="requeue")


def test_stale_settles_are_dropped_and_counted(make_queue: MakeQueue) -> None:
    queue = make_queue()
    queue.put_many(["a", "b"])
    old = get_n(queue, 2)
    queue.recover()  # a new channel: the old deliveries come back with new tags
    new = get_n(queue, 2)
    assert {m.generation for m in new} == {old[0].generation + 1}
    queue.cleanup(old)  # must not reach the new channel (it would close it)
    wait_until(lambda: queue.stats()["invalid_receipts"] == 2)
    queue.cleanup(new)
    wait_until(lambda: queue.stats()["held"] == 0)
    assert queue.stats()["depth"] == 0 and queue.stats()["reconnects"] == 1
    queue.cleanup(new)  # twice: dropped too
    wait_until(lambda: queue.stats()["invalid_receipts"] == 4)


def test_close_releases_the_buffer_and_waits_for_held(make_queue: MakeQueue) -> None:
    name = unique()
    queue = make_queue(name, prefetch=5, max_messages=1)
    queue.put_many([f"m{i}" for i in range(5)])
    [held] = get_n(queue, 1)
    wait_until(lambda: queue.stats()["buffered"] == 4)
    settled_at: list[float] = []

    def settle_later() -> None:
        time.sleep(0.5)
        queue.cleanup([held])
        settled_at.append(time.monotonic())

    import threading

    thread = threading.Thread(target=settle_later)
    thread.start()
    queue.close()
    closed_at = time.monotonic()
    thread.join()
    assert settled_at and settled_at[0] <= closed_at  # close waited for the handler
    other = make_queue(name, declare=False)
    rest = get_n(other, 4)
    assert sorted(m.body for m in rest) == ["m1", "m2", "m3", "m4"]
    assert all(m.redelivered for m in rest)  # released, not handled
    other.cleanup(rest)


def test_declare_conflict_is_a_clear_error(make_queue: MakeQueue, rabbit: str) -> None:
    queue = make_queue(queue_type="quorum")
    with pytest.raises(ConfigurationError, match="exists with other arguments"):
        RabbitMQQueue(rabbit, queue.queue, queue_type="classic")
    passive = RabbitMQQueue(rabbit, queue.queue, queue_type="classic", declare="passive")
    passive.close()


def test_passive_declare_of_a_missing_queue(rabbit: str) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        RabbitMQQueue(rabbit, unique(), declare="passive")


def test_handler_timeout_against_consumer_timeout(rabbit: str) -> None:
    with pytest.raises(ConfigurationError, match="consumer_timeout"):
        RabbitMQQueue(rabbit, unique(), consumer_timeout=60, handler_timeout=60)


def test_handler_timeout_check_method(make_queue: MakeQueue) -> None:
    queue = make_queue(consumer_timeout=120)
    queue.check_handler_timeout(119)
    with pytest.raises(ConfigurationError, match="shorter than the broker's consumer_timeout"):
        queue.check_handler_timeout(300)


def test_queue_pickles_by_settings(make_queue: MakeQueue) -> None:
    queue = make_queue(prefetch=7)
    copy = pickle.loads(pickle.dumps(queue))
    try:
        assert copy.settings == queue.settings
        copy.put("from the copy")
        [message] = get_n(queue, 1)
        assert message.body == "from the copy"
        queue.cleanup([message])
    finally:
        copy.close()


# -- URLs and options ------------------------------------------------------------------


def test_from_url_options_and_pika_passthrough(rabbit: str) -> None:
    name = unique()
    url = rabbit + f"?queue={name}&prefetch=3&max_attempts=2&heartbeat=15&connection_attempts=2"
    queue = open_queue(url)
    try:
        assert isinstance(queue, RabbitMQQueue)
        assert queue.settings.prefetch == 3 and queue.settings.max_attempts == 2
        assert "heartbeat=15" in queue.settings.url and "prefetch" not in queue.settings.url
    finally:
        queue.delete()
        queue.close()


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("queue=q&prefetch=0", "prefetch must be an integer"),
        ("queue=q&queue_type=stream", "queue_type must be one of classic, quorum"),
        ("queue=q&retry=never", "retry must be one of delay, requeue"),
        ("queue=q&declare=maybe", "declare must be true, false or 'passive'"),
        ("queue=q&wait_time=60", "wait_time must be a number of seconds"),
        ("queue=q&heartbeet=5", "heartbeet"),
        ("queue=q&queue=r", "given twice"),
        ("prefetch=3", "no queue"),
        ("queue=amq.x", "queue must be a queue name"),
    ],
)
def test_bad_urls(query: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        from_url(f"amqp://user:s3cr3t-pw@127.0.0.1:1/%2F?{query}")
    assert "s3cr3t-pw" not in str(info.value)


def test_missing_pika_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pika'] = None\n"
        "from queue_consumer import open_queue\n"
        "try:\n    open_queue('amqp://localhost/?queue=q')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "queue-consumer[rabbitmq]" in out


# -- passwords -------------------------------------------------------------------------


@pytest.fixture
def secret_user(rabbit: str) -> Iterator[str]:
    """A user with a password that is not its name (guest's is), removed at the end."""
    user, password = unique("qc-user"), "s3cr3t-pw-" + unique("x")
    ctl = ["rabbitmqctl", "-q"]
    try:
        subprocess.run([*ctl, "add_user", user, password], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot add a RabbitMQ user here: {exc}")
    try:
        subprocess.run(
            [*ctl, "set_permissions", "-p", "/", user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        yield AMQP_URL.replace("guest:guest", f"{user}:{password}")
    finally:
        subprocess.run([*ctl, "delete_user", user], capture_output=True)


def test_password_never_shown(
    secret_user: str, caplog: pytest.LogCaptureFixture, make_queue: MakeQueue
) -> None:
    password = secret_user.split(":")[2].split("@")[0]
    caplog.set_level(logging.DEBUG)
    name = unique()
    queue = from_url(f"{secret_user}?queue={name}&connection_name={name}")
    try:
        queue.put("m")
        shown = [repr(queue), str(queue.stats()), repr(queue.settings), str(queue.settings)]
        queue.recover()  # logs a reconnect, with the URL
        wait_until(lambda: queue.stats()["reconnects"] == 1)
        with pytest.raises(RabbitMQError) as info:
            RabbitMQQueue(secret_user.replace(password, password + "-wrong"), name,
                          operation_timeout=10)  # fmt: skip
        shown.append(str(info.value))
    finally:
        queue.delete()
        queue.close()
    shown += [record.getMessage() for record in caplog.records]
    assert any("***" in text for text in shown)
    for text in shown:
        assert password not in text


def test_heartbeats_flow_while_a_handler_runs_long(make_queue: MakeQueue, rabbit: str) -> None:
    name = unique()
    queue = from_url(f"{rabbit}?queue={name}&heartbeat=1&wait_time=0.2")
    try:
        queue.put("slow")
        done: list[str] = []

        def handler(messages: Iterator[RabbitMQMessage]) -> None:
            for message in messages:
                time.sleep(3.5)  # more than twice the heartbeat: pika alone would be dropped
                done.append(message.body)

        with Consumer(queue, handler, max_workers=1, max_handlers=1):
            wait_until(lambda: done == ["slow"], timeout=30)
        wait_until(lambda: queue.stats()["held"] == 0)
        stats = queue.stats()
        assert stats["reconnects"] == 0 and stats["invalid_receipts"] == 0
        assert stats["depth"] == 0
    finally:
        queue.delete()
        queue.close()


def test_a_delivery_held_near_the_consumer_timeout_is_reported(
    make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # The broker's own timeout (30 min here) cannot be waited for: tell the queue it is 1 s.
    queue = make_queue(consumer_timeout=1.0)
    queue.put("m")
    [message] = get_n(queue, 1)
    wait_until(lambda: queue.stats()["aging_deliveries"] == 1, timeout=10)
    wait_until(lambda: "close to the broker's consumer_timeout" in caplog.text, timeout=5)
    queue.cleanup([message])
