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
