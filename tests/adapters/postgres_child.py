"""A consumer process for the PostgreSQL tests: ``python postgres_child.py URL OUT STOP [FAIL]``.

Runs a ``Consumer`` on the queue at URL until the file STOP exists (or it is killed).
Every message it handles successfully appends one line to OUT:
``id group body attempts start end pid``; a message fails (rejected) when a random draw
seeded by its id and attempt falls under FAIL, the same way in any process. It prints
``ready`` once consuming.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from queue_consumer import Consumer
from queue_consumer.adapters.postgres import PostgresMessage, from_url


def main(url: str, out: str, stop: str, fail: float = 0.0) -> None:
    delay = float(os.environ.get("CHILD_DELAY", "0.002"))

    def handler(messages: Iterator[PostgresMessage]) -> None:
        for message in messages:
            start = time.time()
            time.sleep(delay)
            if random.Random(f"{message.id}/{message.attempts}").random() < fail:
                raise RuntimeError(f"{message.id} fails on attempt {message.attempts}")
            end = time.time()
            with open(out, "a") as log:  # one short append: lines never interleave
                log.write(
                    f"{message.id} {message.group} {message.body} {message.attempts} "
                    f"{start:.6f} {end:.6f} {os.getpid()}\n"
                )

    queue = from_url(url)
    consumer = Consumer(queue, handler, max_workers=2, max_handlers=2, messages_bulk_size=5)
    with consumer:
        print("ready", flush=True)
        while not Path(stop).exists():
            time.sleep(0.02)
    queue.close()


if __name__ == "__main__":
    main(*sys.argv[1:4], *(float(a) for a in sys.argv[4:5]))
