"""Module-level handlers for the robustness tests: they pickle into handler processes.

They report what they did by appending one line per event to a trace file (``os.write``
on an ``O_APPEND`` descriptor is atomic for short lines, across processes), because a
handler process cannot touch the test's memory. Bind the path (and any other settings)
with ``functools.partial``: a partial of a module-level function pickles.

Random choices are seeded per *delivery* (seed, message id, receive count): a run is
reproducible, and a message that failed gets a fresh roll on its next delivery.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from queue_consumer import PartialFailure

#: Deliveries after this one always succeed, so that every run ends.
MAX_BAD_DELIVERIES = 3


def trace(path: str, line: str) -> None:
    """Append one line to the trace file, atomically (one write on an O_APPEND fd)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def read_trace(path: str) -> list[list[str]]:
    """The trace file's lines, split into words (missing file: no lines)."""
    try:
        with open(path) as file:
            return [line.split() for line in file if line.strip()]
    except FileNotFoundError:
        return []


def roll(seed: int, salt: str, message: Any) -> float:
    """A reproducible number in [0, 1) for this delivery of ``message``."""
    return random.Random(f"{seed}:{salt}:{message.id}:{message.receive_count}").random()


def _die() -> None:
    """SIGKILL this process: only ever a handler process, never the test itself."""
    if multiprocessing.parent_process() is None:
        raise RuntimeError("refusing to SIGKILL the test process: use process mode")
    os.kill(os.getpid(), signal.SIGKILL)


def _fate(seed: int, fail_rate: float, kill_rate: float, message: Any) -> str:
    if message.receive_count > MAX_BAD_DELIVERIES:
        return "ok"
    value = roll(seed, "fate", message)
    if value < kill_rate:
        return "kill"
    if value < kill_rate + fail_rate:
        return "fail"
    return "ok"


def chaotic(
    path: str, seed: int, fail_rate: float, kill_rate: float, messages: Iterator[Any]
) -> None:
    """Iterator handler: per message, maybe SIGKILL itself, maybe raise, else succeed.

    Trace lines: ``ok|fail|kill <id> <receipt>``, written before the outcome happens.
    """
    for message in messages:
        fate = _fate(seed, fail_rate, kill_rate, message)
        trace(path, f"{fate} {message.id} {message.receipt}")
        if fate == "kill":
            _die()
        if fate == "fail":
            raise RuntimeError(f"seeded failure of message {message.id}")


def chaotic_bulk(
    path: str, seed: int, fail_rate: float, kill_rate: float, messages: Iterator[Any]
) -> None:
    """Bulk handler: reads the whole chunk, fails exact messages with ``PartialFailure``."""
    batch = list(messages)
    failed = []
    for message in batch:
        fate = _fate(seed, fail_rate, kill_rate, message)
        trace(path, f"{fate} {message.id} {message.receipt}")
        if fate == "kill":
            _die()
        if fate == "fail":
            failed.append(message)
    if failed:
        raise PartialFailure(failed)


# -- process mode ----------------------------------------------------------------------

_INITIALIZED_IN: int | None = None


def record_init(path: str) -> None:
    """A pool_initializer that says where it ran."""
    global _INITIALIZED_IN
    _INITIALIZED_IN = os.getpid()
    trace(path, f"init {os.getpid()}")


def record_pid(path: str, messages: Iterator[Any]) -> None:
    """Says where it ran; fails unless ``record_init`` ran in this very process first."""
    for message in messages:
        if os.getpid() != _INITIALIZED_IN:
            raise RuntimeError("pool_initializer did not run in this process")
        trace(path, f"handle {os.getpid()} {message.body}")


def block_first_delivery(path: str, messages: Iterator[Any]) -> None:
    """Handles each message; on the first delivery of body 'block', sleeps (to be killed).

    Trace lines: ``handle <pid> <body> <receive_count>``, and ``blocked <pid>`` first.
    """
    for message in messages:
        if message.body == "block" and message.receive_count == 1:
            trace(path, f"blocked {os.getpid()}")
            time.sleep(60)
        trace(path, f"handle {os.getpid()} {message.body} {message.receive_count}")


def die_on_first_delivery(path: str, messages: Iterator[Any]) -> None:
    """Handles each message; SIGKILLs itself on the first delivery of body 'die'."""
    for message in messages:
        if message.body == "die" and message.receive_count == 1:
            trace(path, f"dying {os.getpid()}")
            _die()
        trace(path, f"handle {os.getpid()} {message.body} {message.receive_count}")


def fail_first_delivery_of_multiples(divisor: int, messages: Iterator[Any]) -> None:
    """Raises on the first delivery of a body divisible by ``divisor``."""
    for message in messages:
        if message.body % divisor == 0 and message.receive_count == 1:
            raise RuntimeError(f"first delivery of {message.body} fails")


def exit_on_first_delivery_of_multiples(divisor: int, messages: Iterator[Any]) -> None:
    """Calls ``sys.exit()`` (a BaseException) on the first delivery of such a body."""
    for message in messages:
        if message.body % divisor == 0 and message.receive_count == 1:
            sys.exit(f"first delivery of {message.body} exits")


def partial_fail_first_delivery_of_multiples(divisor: int, messages: Iterator[Any]) -> None:
    """Bulk: fails exactly the first deliveries of bodies divisible by ``divisor``."""
    batch = list(messages)
    failed = [m for m in batch if m.body % divisor == 0 and m.receive_count == 1]
    if failed:
        raise PartialFailure(failed)


def _refuse_to_unpickle() -> None:
    raise RuntimeError("this body cannot be unpickled")


class PicklesButWontUnpickle:
    """A body that pickles in the parent and fails to unpickle in the handler process."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _refuse_to_unpickle, ()


# -- signals (tests/unit/signal_worker.py) --------------------------------------------


def traced_sleep(path: str, seconds: float, messages: Iterator[Any]) -> None:
    """Writes ``start <body>``, sleeps, writes ``end <body>``, for each message."""
    for message in messages:
        trace(path, f"start {message.body}")
        time.sleep(seconds)
        trace(path, f"end {message.body}")


def record_init_and_fail(path: str) -> None:
    """A pool_initializer that notes when it ran (wall clock), then fails."""
    trace(path, f"init {os.getpid()} {time.time()}")
    raise RuntimeError("initializer exploded")
