"""MemoryQueue: visibility timeouts, receipts, reject delays."""

from __future__ import annotations

import pickle
import threading

from queue_consumer import MemoryQueue
from queue_consumer.testing import wait_until


def test_messages_are_leased_and_deleted_once() -> None:
    queue = MemoryQueue(max_messages=2)
    queue.put_many(["a", "b", "c"])
    first = queue.get()
    assert [m.body for m in first] == ["a", "b"] and [m.receive_count for m in first] == [1, 1]
    assert [m.body for m in queue.get()] == ["c"]
    assert queue.get() == []
    queue.cleanup(first)
    queue.cleanup(first)
    assert queue.deleted == 2 and len(queue) == 1


def test_an_expired_lease_brings_the_message_back_and_a_stale_cleanup_does_nothing() -> None:
    queue = MemoryQueue(visibility_timeout=0.05)
    queue.put("a")
    (stale,) = queue.get()
    again: list = []
    wait_until(lambda: again.extend(queue.get()) or again)
    (fresh,) = again
    assert fresh.id == stale.id and fresh.receipt != stale.receipt and fresh.receive_count == 2
    queue.cleanup([stale])
    assert queue.deleted == 0
    queue.cleanup([fresh])
    assert queue.deleted == 1 and len(queue) == 0


def test_reject_with_a_delay_and_release_at_once() -> None:
    queue = MemoryQueue(reject_delay=0.1)
    queue.put_many(["a", "b"])
    a, b = queue.get()
    queue.reject([a])
    queue.release([b])
    assert [m.body for m in queue.get()] == ["b"]
    assert queue.stats()["delayed"] == 1
    later: list = []
    wait_until(lambda: later.extend(queue.get()) or later)
    assert [m.body for m in later] == ["a"]


def test_messages_pickle_for_process_mode() -> None:
    queue = MemoryQueue()
    queue.put({"k": [1, 2]})
    (message,) = queue.get()
    assert pickle.loads(pickle.dumps(message)) == message


def test_concurrent_gets_never_hand_out_one_message_twice() -> None:
    queue = MemoryQueue()
    queue.put_many(range(5000))
    seen: list[int] = []
    lock = threading.Lock()

    def drain() -> None:
        while batch := queue.get():
            with lock:
                seen.extend(m.body for m in batch)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(seen) == list(range(5000))


def test_a_failing_handler_is_not_a_hot_retry_loop_by_default() -> None:
    # The Quick start's queue: MemoryQueue(). A rejected message waits 1 s, so a handler
    # that always fails retries once a second, not 80k times a second.
    from queue_consumer import Consumer

    queue = MemoryQueue()
    assert queue.reject_delay == 1.0
    queue.put("poison")

    def fail(messages: object) -> None:
        for _ in messages:  # type: ignore[attr-defined]
            raise RuntimeError("always")

    with Consumer(queue, fail, max_workers=1, max_handlers=1) as consumer:
        wait_until(lambda: consumer.statistics().failed >= 1, timeout=10)
        wait_until(lambda: queue.stats()["delayed"] == 1, timeout=10)
    # A hot loop fails thousands of times in the time the consumer takes to stop.
    assert consumer.statistics().failed < 5
    assert MemoryQueue(reject_delay=0).reject_delay == 0  # an immediate retry, if asked


def test_extend_renews_a_held_lease_and_ignores_a_stale_one() -> None:
    queue = MemoryQueue(visibility_timeout=0.2)
    queue.put_many(["a", "b"])
    a, b = queue.get()
    assert queue.extend([a], timeout=60) == 1
    back: list = []
    wait_until(lambda: back.extend(queue.get()) or back, timeout=10)
    assert [m.body for m in back] == ["b"]  # a's lease was extended, b's expired
    assert queue.extend([b]) == 0  # stale: b was delivered again
    assert queue.get() == []
    queue.cleanup([a])
    assert queue.deleted == 1
