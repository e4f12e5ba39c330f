"""RedisStreamQueue against the local Redis: the contract, fencing, retries, dead letters,
the consumer group's life (own entries back, reclaim, prune), URLs and password masking.

Every test uses its own uniquely named stream, deleted at the end (the server is shared).
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import time
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

from queue_consumer import open_queue
from queue_consumer.adapters.redis import DeadLetter, RedisMessage, RedisStreamQueue, from_url
from queue_consumer.errors import ConfigurationError
from queue_consumer.testing import check_queue_contract, wait_until

__all__ = ["make_queue", "private_redis", "redis_url", "stream_name"]  # fixtures, by name


def get_until(queue: RedisStreamQueue, count: int, timeout: float = 10) -> list[RedisMessage]:
    got: list[RedisMessage] = []

    def more() -> bool:
        got.extend(queue.get())
        return len(got) >= count

    wait_until(more, timeout=timeout, interval=0.02, message=f"{count} message(s) from get()")
    return got


def raw(url: str = LOCAL) -> Any:
    return redis.Redis.from_url(url)


# -- the contract ---------------------------------------------------------------------


def test_contract(make_queue: MakeQueue) -> None:
    # No heartbeat: the check leaves two messages alone to see their lease expire.
    queue = make_queue(claim_idle=1.0, heartbeat=False, retry_delay=0.0, reclaim_interval=0.1)
    check_queue_contract(queue, queue.put_many)


def test_bodies_come_back_as_they_went(make_queue: MakeQueue) -> None:
    queue = make_queue()
    bodies: list[Any] = ["text", b"\x00\xffbytes", {"n": 1, "l": [1, 2]}, [1, "a"], 3, None]
    ids = queue.put_many(bodies)
    assert len(ids) == len(bodies) and all(isinstance(i, str) for i in ids)
    got = get_until(queue, len(bodies))
    assert [m.body for m in got] == bodies
    assert [m.id for m in got] == ids
    assert {m.delivery_count for m in got} == {1}
    assert queue.cleanup(got) == len(bodies)
    assert queue.stats()["stream_length"] == 0  # XDEL: acked entries do not pile up


def test_an_entry_of_another_producer_is_its_fields(make_queue: MakeQueue) -> None:
    queue = make_queue()
    raw().xadd(queue.keys["stream"], {"order": "42", "blob": b"\xff"})
    [message] = get_until(queue, 1)
    assert message.body == {"order": "42", "blob": b"\xff"}
    queue.cleanup([message])


def test_keys_share_one_hash_tag(make_queue: MakeQueue) -> None:
    queue = make_queue("orders-x")
    assert queue.keys == {
        "stream": "{orders-x}",
        "dead": "{orders-x}:dead",
        "delayed": "{orders-x}:delayed",
        "errors": "{orders-x}:errors",
    }


def test_group_created_on_first_use_and_twice_is_fine(make_queue: MakeQueue) -> None:
    first = make_queue()
    first.put("before any consumer")  # an entry put before the group exists is delivered
    second = make_queue(first.stream)
    [message] = get_until(second, 1)
    assert first.get() == []  # a second get() (BUSYGROUP) is fine, and sees nothing
    second.cleanup([message])
    assert message.body == "before any consumer"


def test_declare_false_does_not_create(make_queue: MakeQueue) -> None:
    queue = make_queue(declare=False)
    with pytest.raises(redis.ResponseError):
        queue.get()
    assert not raw().exists(queue.keys["stream"])


# -- settles ----------------------------------------------------------------------------


def test_release_is_back_at_once_and_uncounted(make_queue: MakeQueue) -> None:
    queue = make_queue(claim_idle=30.0)
    queue.put("x")
    [first] = get_until(queue, 1)
    assert queue.release([first]) == 1
    started = time.monotonic()
    [again] = get_until(queue, 1)
    assert time.monotonic() - started < 5  # not after claim_idle (30 s)
    assert again.id == first.id and again.delivery_count == 1  # the attempt was handed back
    assert queue.cleanup([again]) == 1


def test_reject_counts_the_attempt_and_waits_the_backoff(make_queue: MakeQueue) -> None:
    queue = make_queue(claim_idle=5.0, retry_delay=0.5, reclaim_interval=0.05)
    queue.put("x")
    [first] = get_until(queue, 1)
    rejected = time.monotonic()
    assert queue.reject([first], error="boom") == 1
    [again] = get_until(queue, 1)
    assert time.monotonic() - rejected >= 0.45  # the backoff, kept by the idle time
    assert (again.id, again.delivery_count) == (first.id, 2)
    assert queue.stats()["delayed"] == 0  # short: no move
    queue.cleanup([again])
    assert not raw().exists(queue.keys["errors"])  # the kept error went with it


def test_a_long_backoff_goes_through_the_delayed_set(make_queue: MakeQueue) -> None:
    queue = make_queue(claim_idle=0.3, retry_delay=1.0, promote_interval=0.05)
    queue.put({"job": 1})
    [first] = get_until(queue, 1)
    assert queue.reject([first], error="later") == 1
    stats = queue.stats()
    assert (stats["delayed"], stats["in_flight"], stats["stream_length"]) == (1, 0, 0)
    assert stats["depth"] == 1
    [again] = get_until(queue, 1, timeout=10)
    assert again.id != first.id  # re-added: a new entry
    assert again.body == {"job": 1} and again.delivery_count == 2  # the count travelled
    assert queue.stats()["delayed"] == 0
    queue.cleanup([again])


def test_settles_are_fenced(make_queue: MakeQueue) -> None:
    holder = make_queue(claim_idle=0.2, heartbeat=False, reclaim_interval=0.0)
    other = make_queue(holder.stream, claim_idle=0.2, heartbeat=False, reclaim_interval=0.0)
    holder.put("x")
    [late] = get_until(holder, 1)
    [taken] = get_until(other, 1)  # idle past claim_idle: taken back
    assert (taken.id, taken.delivery_count, taken.consumer) == (late.id, 2, other.consumer)
    # The late holder's settles are counted, never applied; extend never steals it back.
    assert holder.extend([late]) == 0
    assert holder.cleanup([late]) == 0
    assert holder.reject([late]) == 0
    assert holder.release([late]) == 0
    assert holder.stats()["stale_settles"] == 3
    pending = raw().xpending_range(holder.keys["stream"], holder.group, "-", "+", 10)
    assert [(p["consumer"].decode(), p["times_delivered"]) for p in pending] == [
        (other.consumer, 2)
    ]
    assert other.cleanup([taken]) == 1


def test_a_released_delivery_taken_by_another_cannot_be_settled(make_queue: MakeQueue) -> None:
    holder = make_queue()
    other = make_queue(holder.stream, reclaim_interval=0.0)
    holder.put("x")
    [first] = get_until(holder, 1)
    holder.release([first])
    [again] = get_until(other, 1)  # claimable at once, by any consumer
    assert (again.id, again.delivery_count) == (first.id, 1)
    assert holder.cleanup([first]) == 0  # stale: counted, not applied
    assert other.cleanup([again]) == 1


def test_heartbeat_keeps_a_slow_handlers_entry(make_queue: MakeQueue) -> None:
    holder = make_queue(claim_idle=0.8, heartbeat=True)  # extended every 0.4 s
    other = make_queue(holder.stream, claim_idle=0.8, reclaim_interval=0.0)
    holder.put("slow")
    [message] = get_until(holder, 1)
    deadline = time.monotonic() + 2.0  # two and a half claim_idle periods
    while time.monotonic() < deadline:
        assert other.get() == []
    assert holder.stats()["extended"] >= 2
    assert holder.cleanup([message]) == 1


def test_extend_resets_the_idle_time(make_queue: MakeQueue) -> None:
    queue = make_queue(claim_idle=10.0, heartbeat=False)
    queue.put("x")
    [message] = get_until(queue, 1)
    time.sleep(0.6)  # let some idle time build up, to see it reset
    assert queue.extend([message]) == 1
    [pending] = raw().xpending_range(queue.keys["stream"], queue.group, "-", "+", 1)
    assert pending["time_since_delivered"] < 550 and pending["times_delivered"] == 1
    with pytest.raises(ConfigurationError, match="timeout"):
        queue.extend([message], timeout=60)  # longer than claim_idle: Redis cannot
    queue.cleanup([message])


# -- dead letters -------------------------------------------------------------------------


def test_poison_goes_to_dead_letters_and_redrive_brings_it_back(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=3, retry_delay=0.0, reclaim_interval=0.0)
    queue.put_many(["poison", "fine"])
    fine = None
    for attempt in (1, 2, 3):
        for message in get_until(queue, 1 if fine else 2):
            if message.body == "fine":
                fine = message
                continue
            assert message.delivery_count == attempt
            queue.reject([message], error=f"ValueError: attempt {attempt}")
    assert fine is not None and queue.cleanup([fine]) == 1
    [dead] = queue.dead_letters()
    assert isinstance(dead, DeadLetter)
    assert (dead.body, dead.attempts, dead.last_error) == ("poison", 3, "ValueError: attempt 3")
    assert dead.died_at > time.time() - 60
    stats = queue.stats()
    assert (stats["dead_letters"], stats["depth"], stats["in_flight"]) == (1, 0, 0)
    assert queue.redrive() == 1
    assert queue.dead_letters() == []
    [back] = get_until(queue, 1)
    assert (back.body, back.delivery_count) == ("poison", 1)  # attempts reset
    queue.cleanup([back])


def test_redrive_by_id_and_a_kept_error_after_a_long_retry(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=2, claim_idle=0.2, retry_delay=0.5, promote_interval=0.0)
    queue.put_many(["a", "b"])
    for message in get_until(queue, 2):
        queue.reject([message], error=f"failed {message.body}")  # 0.5 s > 0.2 s: delayed
    for message in get_until(queue, 2):
        assert message.delivery_count == 2
        queue.reject([message])  # no error given: the kept one is the last error
    dead = {d.body: d for d in queue.dead_letters()}
    assert {b: d.last_error for b, d in dead.items()} == {"a": "failed a", "b": "failed b"}
    assert queue.redrive([dead["a"].id, "0-1"]) == 1  # an unknown id is skipped
    assert [d.body for d in queue.dead_letters()] == ["b"]
    [back] = get_until(queue, 1)
    assert back.body == "a"
    queue.cleanup([back])


def test_entries_of_dead_consumers_die_after_max_attempts(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=2, claim_idle=0.2, heartbeat=False, reclaim_interval=0.0)
    queue.put("crashes its consumer")
    [first] = get_until(queue, 1)  # never settled: the consumer "died"
    [second] = get_until(queue, 1)  # claimed back after claim_idle
    assert (second.id, second.delivery_count) == (first.id, 2)
    wait_until(lambda: queue.get() == [] and queue.stats()["dead_letters"] == 1, timeout=10)
    [dead] = queue.dead_letters()
    assert dead.attempts == 2 and "without being settled" in (dead.last_error or "")
    assert queue.stats()["in_flight"] == 0


# -- the consumer group -------------------------------------------------------------------


def test_a_restarted_consumer_takes_its_own_entries_back_at_once(make_queue: MakeQueue) -> None:
    before = make_queue(consumer="pod-0", claim_idle=60.0)
    other = make_queue(before.stream, consumer="pod-1", claim_idle=60.0, max_messages=1)
    before.put_many([f"m{i}" for i in range(4)])
    [theirs] = get_until(other, 1)
    mine = get_until(before, 3)
    before.close()  # "killed": nothing settled
    after = make_queue(before.stream, consumer="pod-0", claim_idle=60.0, max_messages=2)
    started = time.monotonic()
    back = get_until(after, 3)
    assert time.monotonic() - started < 5  # at once, not after claim_idle
    assert sorted(m.id for m in back) == sorted(m.id for m in mine)
    assert {m.delivery_count for m in back} == {2}
    assert after.stats()["reclaimed"] == 3
    assert after.cleanup(back) == 3
    assert other.cleanup([theirs]) == 1  # pod-1's entry was left alone


def test_idle_consumers_with_nothing_pending_are_pruned(make_queue: MakeQueue) -> None:
    queue = make_queue(prune_idle=0.2)
    client = raw()
    stream = queue.keys["stream"]
    client.xgroup_create(stream, queue.group, id="0", mkstream=True)
    client.xadd(stream, {"k": "s", "d": "held by busy"})
    client.xreadgroup(queue.group, "busy", {stream: ">"}, count=1)
    client.xgroup_createconsumer(stream, queue.group, "gone")
    time.sleep(0.3)  # both idle past prune_idle
    queue.get()  # the first get() prunes
    names = {c["name"].decode() for c in client.xinfo_consumers(stream, queue.group)}
    assert "gone" not in names and "busy" in names  # never one with entries pending
    assert queue.stats()["pruned"] == 1


# -- stats, pickling, purge ------------------------------------------------------------


def test_stats(make_queue: MakeQueue) -> None:
    queue = make_queue(max_messages=2)
    assert queue.stats()["depth"] == 0  # before the stream exists
    queue.put_many(["a", "b", "c"])
    stats = queue.stats()
    assert (stats["depth"], stats["visible"], stats["in_flight"]) == (3, 3, 0)
    got = get_until(queue, 2)
    stats = queue.stats()
    assert (stats["depth"], stats["in_flight"], stats["consumers"], stats["held"]) == (1, 2, 1, 2)
    queue.cleanup(got)
    assert queue.stats()["cleaned"] == 2


def test_queue_and_messages_pickle(make_queue: MakeQueue) -> None:
    queue = make_queue(claim_idle=7.0)
    copy = pickle.loads(pickle.dumps(queue))
    try:
        assert copy.settings() == queue.settings()
        assert copy.consumer != queue.consumer  # a copy makes its own name
        named = pickle.loads(pickle.dumps(make_queue(consumer="worker-1")))
        assert named.consumer == "worker-1"
        named.close()
        queue.put({"a": [1]})
        [message] = get_until(copy, 1)
        assert pickle.loads(pickle.dumps(message)) == message
        assert copy.cleanup([message]) == 1
    finally:
        copy.close()


def test_purge(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=1)
    queue.put_many(["a", "b", "c"])
    [a, *_] = get_until(queue, 3)
    queue.reject([a])  # dead
    assert queue.purge() == 2
    assert queue.stats()["dead_letters"] == 1
    assert queue.purge(dead_letters=True) == 1
    queue.put("after")
    assert [m.body for m in get_until(queue, 1)] == ["after"]  # the group is back at once


# -- URLs, connections, masking ------------------------------------------------------


def test_from_url_and_open_queue(redis_url: str, stream_name: str) -> None:
    url = (
        f"{redis_url}?stream={stream_name}&group=g1&consumer=c1&block=0.5&max_messages=3"
        "&claim_idle=9&max_attempts=4&retry_delay=0.1&max_retry_delay=2&reclaim_interval=0.2"
        "&promote_interval=0.3&prune_idle=none&heartbeat=off&declare=yes&max_connections=7"
        "&connect_timeout=2&client_name=qc-test"
    )
    queue = open_queue(url)
    try:
        assert isinstance(queue, RedisStreamQueue)
        settings = queue.settings()
        assert settings["url"] == "redis://127.0.0.1:6379/0"
        assert {k: settings[k] for k in ("group", "consumer", "block", "max_messages")} == {
            "group": "g1",
            "consumer": "c1",
            "block": 0.5,
            "max_messages": 3,
        }
        assert settings["prune_idle"] is None and settings["heartbeat"] is False
        assert settings["client_options"] == {"client_name": "qc-test"}
        kwargs = queue._pool.connection_kwargs
        # The read timeout covers the blocking read (block + 10 s), never unbounded.
        assert kwargs["socket_timeout"] == 10.5 and kwargs["socket_keepalive"] is True
        assert queue._pool.max_connections == 7
        queue.put("x")
        [message] = get_until(queue, 1)
        queue.cleanup([message])
        assert isinstance(open_queue(f"rediss://h:1/0?stream={stream_name}"), RedisStreamQueue)
    finally:
        queue.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "needs ?stream=NAME"),
        ("stream=a&bogus=1", "unknown option 'bogus'"),
        ("stream=a&block=soon", "block must be a number of seconds"),
        ("stream=a&max_messages=0", "max_messages must be an integer"),
        ("stream=a&claim_idle=0", "claim_idle must be a number of seconds > 0"),
        ("stream=a&heartbeat=maybe", "heartbeat must be true or false"),
        ("stream={a}", "stream must be a non-empty name without { or }"),
        ("stream=a&stream=b", "given twice"),
        ("stream=a&block=5&socket_timeout=3", "socket_timeout (3.0) must be longer than block"),
        ("stream=a&retry_delay=5&max_retry_delay=1", "max_retry_delay"),
    ],
)
def test_bad_urls_name_the_option_and_hide_the_password(query: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        from_url(f"redis://user:s3cret@127.0.0.1:6379/0?{query}")
    assert expected in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis:///?stream=a", "needs a host"),
        ("redis://h/x?stream=a", "database number"),
        ("redis+unix://?stream=a", "needs the socket's path"),
        ("redis://:s3cret@h:99999/?stream=a", "malformed Redis URL"),
    ],
)
def test_bad_connection_urls(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        from_url(url)
    assert expected in str(error.value) and "s3cret" not in str(error.value)


def test_the_password_never_shows(
    private_redis: Any, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = private_redis(args=("--requirepass", "s3cret"))
    caplog.set_level(logging.DEBUG)
    with from_url(f"{server.url}?stream={stream_name}&block=0.1") as queue:
        queue.put("x")
        [message] = get_until(queue, 1)
        queue.cleanup([message])
        shown = [repr(queue), str(queue), queue.url, str(queue.stats())]
        assert "redis://:***@127.0.0.1" in repr(queue)
    wrong = server.url.replace("s3cret", "wr0ng-s3cret")
    with from_url(f"{wrong}?stream={stream_name}") as queue, pytest.raises(redis.RedisError) as err:
        queue.get()
    shown += [str(err.value), repr(err.value), caplog.text]
    assert not [text for text in shown if "s3cret" in text]


def test_the_password_from_a_file_or_the_environment(
    private_redis: Any, tmp_path: Path, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = private_redis(args=("--requirepass", "s3cret"))
    bare = server.url.replace(":s3cret@", "")
    secret_file = tmp_path / "redis-password"
    secret_file.write_text("s3cret\n")  # as a mounted secret often is
    monkeypatch.setenv("QC_TEST_REDIS_PASSWORD", "s3cret")
    for option in (f"password_file={secret_file}", "password_env=QC_TEST_REDIS_PASSWORD"):
        with from_url(f"{bare}?stream={stream_name}&block=0.1&{option}") as queue:
            queue.put("x")
            [message] = get_until(queue, 1)
            assert queue.cleanup([message]) == 1
            assert "s3cret" not in repr(queue.settings()) + repr(queue)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        from_url(f"{bare}?stream=a&password_file={tmp_path / 'missing'}")
    with pytest.raises(ConfigurationError, match="is not set"):
        from_url(f"{bare}?stream=a&password_env=QC_TEST_NOT_SET_ANYWHERE")


def test_a_unix_socket(private_redis: Any, tmp_path: Path, stream_name: str) -> None:
    sock = tmp_path / "redis.sock"
    private_redis(args=("--unixsocket", str(sock), "--unixsocketperm", "700"))
    with open_queue(f"redis+unix://{sock}?stream={stream_name}&db=1&block=0.1") as queue:
        assert isinstance(queue, RedisStreamQueue)
        queue.put("over the socket")
        [message] = get_until(queue, 1)
        assert message.body == "over the socket"
        queue.cleanup([message])
    with pytest.raises(ConfigurationError, match="unknown queue URL scheme 'unix'"):
        open_queue(f"unix://{sock}?stream={stream_name}")


def test_a_missing_redis_py_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from queue_consumer import open_queue\n"
        "try:\n"
        "    open_queue('redis://localhost/0?stream=x')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "try:\n"
        "    import queue_consumer.adapters.redis\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('ModuleNotFoundError', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "ConfigurationError" in out and "queue-consumer[redis]" in out
    assert "ModuleNotFoundError the Redis adapter needs redis-py" in out


def test_delete_stream_helper_removes_every_key(redis_url: str, stream_name: str) -> None:
    client = raw()
    for suffix in ("", ":dead", ":delayed", ":errors"):
        client.set(f"{{{stream_name}}}{suffix}", "1")
    delete_stream(redis_url, stream_name)
    assert client.exists(*(f"{{{stream_name}}}{s}" for s in ("", ":dead"))) == 0


def test_dead_letter_at_once_for_a_permanent_failure(make_queue: MakeQueue) -> None:
    from queue_consumer import Consumer, PermanentFailure

    queue = make_queue(max_attempts=5)
    queue.put_many(["ok", "bad"])

    def handler(messages: Any) -> None:
        for message in messages:
            if message.body == "bad":
                raise PermanentFailure("not an order")

    with Consumer(queue, handler, max_workers=1, max_handlers=1):
        wait_until(lambda: queue.stats()["dead_letters"] == 1, timeout=10)
        wait_until(lambda: queue.stats()["in_flight"] == 0, timeout=10)
    [dead] = queue.dead_letters()
    assert dead.body == "bad" and dead.attempts == 1 and "not an order" in (dead.last_error or "")
    assert queue.stats()["depth"] == 0


def test_interrupt_ends_a_blocked_get_at_once(make_queue: MakeQueue) -> None:
    import threading

    queue = make_queue(block=30.0)
    queue.put("first")
    queue.cleanup(get_until(queue, 1))  # the group exists, the first passes are done
    results: list[Any] = []
    reader = threading.Thread(target=lambda: results.append(queue.get()))
    started = time.monotonic()
    reader.start()

    def blocked() -> bool:
        return any(
            c.get("name") == queue._client_name and c.get("cmd") == "xreadgroup"
            for c in raw().client_list()
        )

    wait_until(blocked, timeout=10, message="get() blocked in XREADGROUP")
    queue.interrupt()
    reader.join(10)
    assert results == [[]] and time.monotonic() - started < 10  # not the 30 s block
    queue.put("still works")
    [message] = get_until(queue, 1)
    queue.cleanup([message])
