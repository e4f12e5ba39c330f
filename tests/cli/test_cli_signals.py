"""Stopping `run`: SIGTERM drains and loses nothing; SIGKILL loses nothing after a restart."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

from cli_helpers import CLI

from queue_consumer.testing import wait_until

COUNT = 150


def _fill(cli: CLI, url: str) -> set[str]:
    bodies = [json.dumps({"n": n}) for n in range(COUNT)]
    result = cli.run("send", url, "-", input="\n".join(bodies) + "\n")
    assert result.returncode == 0, result.stderr
    return set(bodies)


def test_sigterm_mid_run_drains_and_loses_nothing(cli: CLI, db_url: str) -> None:
    url = db_url + "&wait_time=0.1"
    bodies = _fill(cli, url)
    process = cli.start(
        "run",
        "tasks:handle",
        "--queue",
        url,
        "--handlers",
        "3",
        "--bulk-size",
        "2",
        TASKS_DELAY="0.02",
    )
    wait_until(lambda: len(cli.processed()) >= 20, timeout=60, message="some processed")
    assert cli.stop(process, signal.SIGTERM) == 0, cli.log()
    assert "SIGTERM: shutting down gracefully" in cli.log()

    processed = cli.processed()
    assert len(processed) == len(set(processed)), "a graceful stop handles nothing twice"
    assert len(processed) < COUNT, "stopped mid-run"
    stats = cli.stats(url)
    # Nothing stays leased: what was handled is gone, what was not is back in the queue.
    assert stats["in_flight"] == 0
    assert stats["dead_letters"] == 0
    assert stats["depth"] == COUNT - len(processed)

    # A second run finishes the rest: every message handled exactly once overall.
    process = cli.start("run", "tasks:handle", "--queue", url, name="again")
    wait_until(lambda: len(cli.processed()) >= COUNT, timeout=60, message="all processed")
    wait_until(lambda: cli.stats(url)["in_flight"] == 0, timeout=30, message="settled")
    assert cli.stop(process) == 0, cli.log("again")
    assert Counter(cli.processed()) == Counter(bodies)
    assert cli.stats(url)["depth"] == 0


def test_sigkill_then_restart_processes_everything(cli: CLI, db_url: str) -> None:
    # A short lease, so what the killed process held comes back quickly.
    url = db_url + "&wait_time=0.1&visibility_timeout=1"
    bodies = _fill(cli, url)
    process = cli.start(
        "run",
        "tasks:handle",
        "--queue",
        url,
        "--workers",
        "2",
        "--handlers",
        "3",
        "--bulk-size",
        "2",
        TASKS_DELAY="0.02",
    )
    wait_until(lambda: len(cli.processed()) >= 20, timeout=60, message="some processed")
    process.kill()
    process.wait(timeout=30)
    killed_at = len(cli.processed())
    assert killed_at < COUNT, "killed mid-run"

    process = cli.start("run", "tasks:handle", "--queue", url, name="again")

    def done() -> bool:
        stats = cli.stats(url)
        return set(cli.processed()) == bodies and stats["depth"] == stats["in_flight"] == 0

    wait_until(done, timeout=90, message="everything processed after the restart")
    assert cli.stop(process) == 0, cli.log("again")
    stats = cli.stats(url)
    assert stats == {**stats, "depth": 0, "in_flight": 0, "dead_letters": 0}
    # Re-deliveries are only of what the killed process held, leased and not cleaned up:
    # at most a get() batch (max_messages=10) per worker (2 by default here) plus the
    # chunks in its 3 handlers.
    repeats = sum(Counter(cli.processed()).values()) - len(bodies)
    assert 0 <= repeats <= 2 * 10 + 3 * 2, f"{repeats} re-deliveries"


def test_second_signal_stops_at_once(cli: CLI, db_url: str) -> None:
    url = db_url + "&wait_time=0.1"
    _fill(cli, url)
    process = cli.start("run", "tasks:stuck", "--queue", url, "--handlers", "2")
    wait_until(lambda: cli.stats(url)["in_flight"] > 0, timeout=60, message="handlers busy")
    process.send_signal(signal.SIGTERM)
    cli.wait_log("shutting down gracefully")
    started = time.monotonic()
    assert process.poll() is None, "a graceful stop waits for the running handlers"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, cli.log()
    assert time.monotonic() - started < 30
    assert "stopping now" in cli.log()
    # What the stuck handlers held was released: nothing is left leased.
    assert cli.stats(url)["in_flight"] == 0, cli.log()
