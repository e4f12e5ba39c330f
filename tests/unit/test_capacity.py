"""The pool's capacity: acquire, park, hand over, close (slot threads idle, no handler runs)."""

from __future__ import annotations

import threading

from queue_consumer._pool import HandlerPool, HandlerSlot
from queue_consumer._runners import ThreadRunner
from queue_consumer.testing import wait_until


def make_pool(size: int) -> HandlerPool:
    return HandlerPool(size, lambda: ThreadRunner(lambda messages: None, None))


def test_acquire_takes_free_slots_and_release_gives_them_back() -> None:
    pool = make_pool(2)
    try:
        assert pool.acquire() and pool.acquire()
        assert pool.busy() == 2
        got = threading.Event()
        taker = threading.Thread(target=lambda: pool.acquire() and got.set())
        taker.start()
        assert not got.wait(0.1), "a third acquire must wait for a free slot"
        pool.release()
        assert got.wait(10)
        taker.join()
    finally:
        pool.close()


def test_parked_jobs_run_in_the_next_slot_to_finish_and_close_returns_the_rest() -> None:
    pool = make_pool(1)
    ran: list[str] = []
    gate = threading.Event()

    def job(name: str, wait: bool = False):  # type: ignore[no-untyped-def]
        def task(slot: HandlerSlot) -> None:
            if wait:
                gate.wait(10)
            ran.append(name)

        return task

    try:
        assert pool.acquire()
        pool.submit(job("first", wait=True))
        parked = [job("second"), job("third")]
        pool.submit_or_park(parked)
        assert pool.parked() == 2 and pool.busy() == 1
        gate.set()
        assert pool.wait_taken(parked) == []
        wait_until(lambda: ran == ["first", "second", "third"])
        wait_until(lambda: pool.busy() == 0)
        # Once closing, parked jobs come back to the worker (it releases their messages).
        assert pool.acquire()
        gate.clear()
        pool.submit(job("blocked", wait=True))
        late = [job("never")]
        pool.submit_or_park(late)
        pool.close()
        assert pool.wait_taken(late) == late
        assert not pool.acquire()
    finally:
        gate.set()
        pool.close()
