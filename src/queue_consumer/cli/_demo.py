"""``queue-consumer demo``: fill a local queue, consume it with live progress, check each once.

Some messages fail on their first delivery (the handler says so with ``PartialFailure``),
go back to the queue with a short delay and succeed on the next delivery. A hook counts
every message that succeeded, so the summary can show that each was handled exactly once.

The demo never touches a queue it did not create, unless its own ``--queue`` names one
(``QUEUE_CONSUMER_QUEUE`` is ignored: it names the production queue in a worker's
environment). Even then it never consumes a message that is not its own: it refuses a
queue that is not empty at the start (or cannot say), tags its messages with a run id, and
should a foreign message arrive while it runs, gives it back untouched (``release``, never
handled, never deleted) and stops.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from .. import Consumer, ConsumerHooks
from .._urls import open_queue
from ..errors import ConfigurationError, PartialFailure

__all__ = ["DemoOptions", "demo_handler", "run_demo"]

#: How long to wait without any progress before the demo gives up (a broken build).
STALL_TIMEOUT = 30.0
#: Seconds a failed message waits before it comes back (SQLite demo queue).
RETRY_DELAY = 0.05


@dataclass(frozen=True)
class DemoOptions:
    queue_url: str | None = None
    messages: int = 2000
    fail_rate: float = 0.1
    workers: int = 2
    handlers: int = 4
    bulk_size: int = 10
    processes: bool = False
    work_time: float = 0.002


def demo_handler(messages: Iterator[Any]) -> None:
    """The sample handler: a few ms of "work" per message; some fail on first delivery.

    Module-level, so handler processes (``--processes``) can import it.
    """
    failed = []
    for message in messages:
        body = _body(message)
        time.sleep(body.get("work", 0.0))
        if _delivery(message) <= body.get("fails", 0):
            failed.append(message)
    if failed:
        # Only these failed: the rest of the chunk succeeded and leaves the queue.
        raise PartialFailure(failed, f"{len(failed)} message(s) fail on first delivery")


def _body(message: Any) -> dict[str, Any]:
    body = getattr(message, "body", message)
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    return body if isinstance(body, dict) else {}


def _delivery(message: Any) -> int:
    """Which delivery of this message this is (1 = first), if the queue tells."""
    for name in ("receive_count", "attempts", "attempt", "delivery_count"):
        value = getattr(message, name, None)
        if isinstance(value, int):
            return value
    return 1 << 30  # unknown: never fail on purpose, or the demo would never end


class _Tally(ConsumerHooks):
    """A hook that counts each message that succeeded, by its demo number."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.succeeded: Counter[int] = Counter()

    def on_chunk_finished(
        self, succeeded: Sequence[Any], failed: Sequence[Any], error: str | None, duration: float
    ) -> None:
        numbers = [_body(m).get("n", -1) for m in succeeded]
        with self.lock:
            self.succeeded.update(numbers)

    def counts(self) -> tuple[int, int]:
        """(distinct messages done, duplicate successes)."""
        with self.lock:
            done = len(self.succeeded)
            return done, sum(self.succeeded.values()) - done


def _fill(queue: Any, options: DemoOptions, run_id: str) -> int:
    rng = random.Random(42)  # the same demo every time
    bodies = [
        json.dumps(
            {
                "demo": run_id,
                "n": n,
                "fails": int(rng.random() < options.fail_rate),
                "work": options.work_time,
            }
        )
        for n in range(options.messages)
    ]
    put_many = getattr(queue, "put_many", None)
    if callable(put_many):
        for start in range(0, len(bodies), 500):
            put_many(bodies[start : start + 500])
    else:
        for body in bodies:
            queue.put(body)
    return sum(json.loads(b)["fails"] for b in bodies)


#: ``stats()`` keys that count messages a consumer could receive (SQLite, memory, SQS).
_HELD_KEYS = (
    "depth",
    "visible",
    "delayed",
    "in_flight",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def check_empty(queue: Any, url: str) -> None:
    """Refuse a queue that holds messages, or cannot say it holds none: they are not ours."""
    stats = getattr(queue, "stats", None)
    counts = stats() if callable(stats) else {}
    held = {key: counts[key] for key in _HELD_KEYS if key in counts}
    if not held:
        raise ConfigurationError(
            f"demo: cannot tell whether {url} is empty (its stats() shows no depth): the "
            "demo only runs on an empty queue, so that it never consumes messages of yours"
        )
    busy = {key: value for key, value in held.items() if value}
    if busy:
        shown = ", ".join(f"{key} {value}" for key, value in busy.items())
        raise ConfigurationError(
            f"demo: {url} is not empty ({shown}): the demo only runs on an empty queue, so "
            "that it never consumes messages of yours; leave out --queue to use a temp dir"
        )


def _run_of(message: Any) -> object:
    try:
        return _body(message).get("demo")
    except (ValueError, TypeError, AttributeError):
        return None


class OwnMessages:
    """The queue as the demo's consumer sees it: ``get()`` returns this run's messages only.

    Any other message is given back at once, untouched (``release``: never handled, never
    deleted; without ``release`` it is left to the queue's own lease expiry), and counted,
    and the demo stops. Every other attribute is the queue's own.
    """

    def __init__(self, queue: Any, run_id: str) -> None:
        self._queue = queue
        self._run_id = run_id
        self._lock = threading.Lock()
        self.foreign = 0
        self.foreign_seen = threading.Event()

    def get(self) -> list[Any]:
        messages = list(self._queue.get())
        mine = [m for m in messages if _run_of(m) == self._run_id]
        if len(mine) < len(messages):
            others = [m for m in messages if _run_of(m) != self._run_id]
            release = getattr(self._queue, "release", None)
            if callable(release):
                release(others)
            with self._lock:
                self.foreign += len(others)
            self.foreign_seen.set()
        return mine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class _Progress:
    """One status line on ``out``: rewritten with ``\\r`` on a TTY, a line a second otherwise."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self.every = 0.1 if self.tty else 1.0
        self.last = 0.0

    def show(
        self, done: int, failed: int, in_flight: int, elapsed: float, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (
            f"done {done}/{self.total} ({100 * done // max(self.total, 1)}%)  failed {failed}  "
            f"{rate:,.0f} msg/s  in flight {in_flight}"
        )
        if self.tty:
            self.out.write(f"\r\x1b[2K{line}")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that every ``finally`` (the temp dir) runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def run_demo(options: DemoOptions, out: TextIO) -> int:
    """Run the demo, report on ``out``; 0 when every message was handled exactly once.

    Without ``options.queue_url`` the queue is a SQLite file in a temp dir, removed on the
    way out, SIGTERM included.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="queue-consumer-demo-") as tmp:
            url = options.queue_url or (
                f"sqlite:///{os.path.join(tmp, 'demo.db')}?queue=demo&retry_delay={RETRY_DELAY}"
            )
            queue = open_queue(url)
            try:
                if options.queue_url:
                    check_empty(queue, url)
                return _consume(queue, url, options, out)
            finally:
                close = getattr(queue, "close", None)
                if callable(close):
                    close()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _consume(queue: Any, url: str, options: DemoOptions, out: TextIO) -> int:
    total = options.messages
    run_id = secrets.token_hex(4)
    out.write(f"demo: putting {total} messages on {url} (run {run_id})\n")
    failing = _fill(queue, options, run_id)
    own = OwnMessages(queue, run_id)
    mode = "processes" if options.processes else "threads"
    out.write(
        f"demo: {failing} of them fail on first delivery; consuming with {options.workers} "
        f"workers, {options.handlers} handler {mode}, bulk size {options.bulk_size}\n"
    )
    tally = _Tally()
    consumer = Consumer(
        own,
        demo_handler,
        max_workers=options.workers,
        max_handlers=options.handlers,
        messages_bulk_size=options.bulk_size,
        with_thread_executor=not options.processes,
        hooks=[tally],
    )
    progress = _Progress(out, total)
    started = time.monotonic()
    last_change, last_done = started, -1
    interrupted = stalled = foreign = False
    consumer.start()
    try:
        consumer.supervise(blocking=False)
        while True:
            done, _ = tally.counts()
            stats = consumer.statistics()
            now = time.monotonic()
            progress.show(done, stats.failed, stats.in_flight, now - started)
            if done >= total:
                break
            if own.foreign_seen.is_set():
                foreign = True
                break
            if done != last_done:
                last_change, last_done = now, done
            elif now - last_change > STALL_TIMEOUT:
                stalled = True
                break
            time.sleep(0.02)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        consumer.shutdown()
    elapsed = time.monotonic() - started
    done, duplicates = tally.counts()
    stats = consumer.statistics()
    progress.show(done, stats.failed, stats.in_flight, elapsed, force=True)
    progress.close()
    out.write(
        f"demo: processed {done} of {total}, retries {stats.failed}, released "
        f"{stats.released}, duplicates {duplicates}, "
        f"elapsed {elapsed:.2f}s, {done / elapsed if elapsed else 0:,.0f} msg/s\n"
    )
    queue_stats = getattr(queue, "stats", None)
    if callable(queue_stats):
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in queue_stats().items())
        out.write(f"demo: the queue now holds: {counts}\n")
    if interrupted:
        out.write("demo: interrupted\n")
        return 130
    if foreign:
        out.write(
            f"demo: FAILED: {own.foreign} message(s) on {url} were not the demo's: given back "
            "untouched (never handled, never deleted); stopped\n"
        )
        return 1
    if stalled or duplicates or done != total:
        out.write(f"demo: FAILED: no progress for {STALL_TIMEOUT:.0f}s\n" if stalled else "")
        out.write("demo: FAILED: not every message was handled exactly once\n")
        return 1
    out.write("demo: every message handled exactly once\n")
    return 0
