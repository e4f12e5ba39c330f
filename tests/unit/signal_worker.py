"""A consumer run as its own process, for tests/unit/test_signals.py to send signals to.

It fills a MemoryQueue, consumes it with ``robust_handlers.traced_sleep`` (which appends
``start <id>`` / ``end <id>`` to the trace file) and runs ``supervise(blocking=True)``.
It appends ``ready`` to the trace once supervise has taken over SIGTERM and SIGINT, and
``stopping`` once a shutdown has begun. When supervise returns it prints one JSON line
(the consumer's statistics and the queue's state) and exits 0. Errors propagate.

    python signal_worker.py TRACE [--mode threads|processes] [--sleep S] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import robust_handlers  # needs the path above (so do handler processes)

from queue_consumer import Consumer, MemoryQueue, State


def watch(consumer: Consumer, path: str) -> None:
    """Tell the test when it may signal us, and when the shutdown has begun."""
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        time.sleep(0.01)
    robust_handlers.trace(path, "ready")
    while consumer.state is State.RUNNING:
        time.sleep(0.01)
    robust_handlers.trace(path, "stopping")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace")
    parser.add_argument("--mode", choices=["threads", "processes"], default="threads")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--handlers", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--handler-timeout", type=float, default=None)
    args = parser.parse_args()

    queue = MemoryQueue(visibility_timeout=300)
    queue.put_many(range(args.messages))
    consumer = Consumer(
        queue,
        functools.partial(robust_handlers.traced_sleep, args.trace, args.sleep),
        max_workers=1,
        max_handlers=args.handlers,
        with_thread_executor=args.mode == "threads",
        handler_timeout=args.handler_timeout,
        max_stuck_handlers=0,
    )
    consumer.start()
    threading.Thread(target=watch, args=(consumer, args.trace), daemon=True).start()
    consumer.supervise(blocking=True, polling_time=0.1)
    report = {
        "statistics": dataclasses.asdict(consumer.statistics()),
        "queue": queue.stats(),
        "remaining": len(queue),
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
