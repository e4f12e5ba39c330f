"""The handler the chaos consumers run: ``benchmarks.chaos._handler:handle``.

It records every successful handling as one line ``ID PID UNIX_TIME`` appended to
``$CHAOS_DIR/handled-PID.log`` (one file per process, so threads and child processes never
interleave a line). A body is ``RUN:ID:KIND``; KIND says what the message does to its
handler (only on its first delivery, except ``poison``):

- ``ok``: nothing; ``fail1``: raises; ``poison``: raises on every delivery, so it must end
  in the dead letters (by design); ``hang1``: sleeps ``CHAOS_HANG`` s (past
  ``--handler-timeout``); ``exit1``: ``os._exit(3)`` (in a ``--processes`` child);
  ``mem1``: allocates 1 GiB under the address-space limit set by :func:`init` (MemoryError).

``CHAOS_SLEEP`` (seconds) is the I/O time of every handling (the scale-out workload).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable
from typing import Any

_files: dict[int, int] = {}


def _record(message_id: str) -> None:
    pid = os.getpid()
    fd = _files.get(pid)
    if fd is None:
        path = os.path.join(os.environ["CHAOS_DIR"], f"handled-{pid}.log")
        fd = _files[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{message_id} {pid} {time.time():.3f}\n".encode())  # one write: one line


def _text(body: Any) -> str:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body).decode()
    return str(body)


def handle(messages: Iterable[Any]) -> None:
    sleep = float(os.environ.get("CHAOS_SLEEP", "0") or 0)
    for message in messages:
        _, message_id, kind = _text(message.body).split(":", 2)
        first = int(getattr(message, "delivery_count", 1) or 1) <= 1
        if kind == "poison":
            raise RuntimeError(f"poison message {message_id}: fails on every delivery")
        if first and kind == "fail1":
            raise RuntimeError(f"injected failure of {message_id}")
        if first and kind == "hang1":
            time.sleep(float(os.environ.get("CHAOS_HANG", "30")))
        if first and kind == "exit1":
            os._exit(3)
        if first and kind == "mem1":
            hog = bytearray(1 << 30)  # past the RLIMIT_AS set by init(): MemoryError
            del hog
        if sleep:
            time.sleep(sleep)
        _record(message_id)


def init() -> None:
    """``--initializer``: note this handler process, and cap its memory when asked."""
    directory = os.environ["CHAOS_DIR"]
    with open(os.path.join(directory, f"child-{os.getpid()}"), "w"):
        pass
    if os.environ.get("CHAOS_MEMORY_LIMIT"):
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
        limit = size + int(os.environ["CHAOS_MEMORY_LIMIT"])  # headroom above what it has
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
