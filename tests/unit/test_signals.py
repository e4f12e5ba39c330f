"""supervise(blocking=True) under real signals, in a real process (tests/unit/signal_worker.py).

SIGTERM or SIGINT: graceful shutdown. Running handlers finish, fetched messages nobody
started are released, supervise returns and the process exits 0. A second signal during
a slow drain stops at once and releases the running handlers' messages too. Stuck
handlers in thread mode make supervise raise StuckHandlersError: the process exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from robust_handlers import read_trace

from queue_consumer.testing import wait_until

WORKER = Path(__file__).with_name("signal_worker.py")
DEADLINE = 30  # starting Python (and handler processes) is slow on a loaded machine
MESSAGES = 100


class Run:
    """One signal_worker process, in a session of its own (so killpg reaches only it)."""

    def __init__(self, trace: Path, *args: str) -> None:
        self.trace = str(trace)
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), self.trace, "--messages", str(MESSAGES), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def events(self, word: str) -> list[str]:
        return [" ".join(words[1:]) for words in read_trace(self.trace) if words[0] == word]

    def wait_for(self, predicate: Callable[[], object], what: str) -> None:
        wait_until(lambda: predicate() or self.process.poll() is not None, timeout=DEADLINE)
        if self.process.poll() is not None:
            _, err = self.process.communicate()
            pytest.fail(f"signal_worker exited ({self.process.returncode}) before {what}:\n{err}")

    def wait_running(self, handlers: int) -> int:
        """Wait until supervise owns the signals and ``handlers`` handlers have started."""
        self.wait_for(
            lambda: self.events("ready") and len(self.events("start")) >= handlers,
            "handlers started",
        )
        return len(self.events("start"))

    def finish(self) -> tuple[int, dict[str, Any], str]:
        out, err = self.process.communicate(timeout=DEADLINE)
        report = json.loads(out.splitlines()[-1]) if out.strip() else {}
        return self.process.returncode, report, err

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(*args: str) -> Run:
        runs.append(Run(tmp_path / f"trace{len(runs)}", *args))
        return runs[-1]

    yield start
    for run in runs:  # a failed test must not leave a consumer running
        run.kill()


def check_graceful(run: Run, started_before_signal: int, handlers: int) -> None:
    code, report, err = run.finish()
    assert code == 0, err
    starts, ends = run.events("start"), run.events("end")
    # Every handler that started also finished, and none started once the shutdown began.
    assert starts and sorted(starts) == sorted(ends)
    assert len(set(starts)) == len(starts)
    assert len(starts) <= started_before_signal + handlers
    stats, queue = report["statistics"], report["queue"]
    assert stats["in_flight"] == 0
    assert stats["failed"] == 0
    assert stats["succeeded"] == len(ends) == queue["deleted"]
    # Fetched but never started: handed back, not left leased until a visibility timeout.
    assert stats["released"] > 0
    assert stats["received"] == stats["succeeded"] + stats["released"]
    assert queue["in_flight"] == 0
    assert queue["visible"] == report["remaining"] == MESSAGES - len(ends)


@pytest.mark.parametrize(
    ("mode", "whole_group"),
    [("threads", False), ("processes", False), ("processes", True)],
    ids=["threads", "processes", "processes-to-the-group"],
)
def test_sigterm_shuts_down_gracefully(
    start: Callable[..., Run], mode: str, whole_group: bool
) -> None:
    run = start("--mode", mode, "--sleep", "1.0", "--handlers", "2")
    started = run.wait_running(handlers=2)
    if whole_group:
        # Like systemd (KillMode=control-group) or `kill -TERM -- -PGID`: handler processes
        # get it too, and must let the parent decide when they stop.
        os.killpg(run.process.pid, signal.SIGTERM)
    else:
        os.kill(run.process.pid, signal.SIGTERM)
    check_graceful(run, started, handlers=2)


@pytest.mark.parametrize(
    ("mode", "whole_group"),
    [("threads", False), ("processes", True)],
    ids=["threads", "processes-ctrl-c-to-the-group"],
)
def test_sigint_shuts_down_gracefully(
    start: Callable[..., Run], mode: str, whole_group: bool
) -> None:
    run = start("--mode", mode, "--sleep", "1.0", "--handlers", "2")
    started = run.wait_running(handlers=2)
    if whole_group:
        # Like Ctrl-C in a terminal: handler processes get it too, and must ignore it.
        os.killpg(run.process.pid, signal.SIGINT)
    else:
        os.kill(run.process.pid, signal.SIGINT)
    check_graceful(run, started, handlers=2)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_second_sigterm_stops_without_waiting(start: Callable[..., Run], mode: str) -> None:
    run = start("--mode", mode, "--sleep", "120", "--handlers", "2")
    run.wait_running(handlers=2)
    os.kill(run.process.pid, signal.SIGTERM)
    run.wait_for(lambda: run.events("stopping"), "the shutdown began")
    signalled = time.monotonic()
    os.kill(run.process.pid, signal.SIGTERM)
    code, report, err = run.finish()

    assert time.monotonic() - signalled < DEADLINE / 2  # not the 120 s the handlers sleep
    assert code == 0, err
    assert run.events("end") == []
    stats, queue = report["statistics"], report["queue"]
    # The running handlers' messages were released too: nothing is left leased.
    assert stats["succeeded"] == stats["failed"] == 0
    assert stats["released"] == stats["received"] > 0
    assert stats["in_flight"] == 0
    assert queue["in_flight"] == 0
    assert queue["visible"] == report["remaining"] == MESSAGES


def test_stuck_handler_threads_make_supervise_raise(start: Callable[..., Run]) -> None:
    run = start(
        "--mode", "threads", "--sleep", "120", "--handlers", "2", "--handler-timeout", "0.3"
    )
    began = time.monotonic()
    code, report, err = run.finish()

    assert code != 0
    assert "StuckHandlersError" in err
    assert "handler_timeout=0.3" in err
    assert report == {}  # supervise raised: the worker never got to report
    assert time.monotonic() - began < DEADLINE  # it did not wait for the stuck threads
    assert run.events("end") == []
