"""`queue-consumer demo`: seconds long, live progress, and a summary proving exactly-once."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

from cli_helpers import CLI

from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.cli._demo import OwnMessages


def _summary(stderr: str) -> dict[str, str]:
    match = re.search(
        r"processed (\d+) of (\d+), retries (\d+), released (\d+), duplicates (\d+), "
        r"elapsed ([\d.]+)s",
        stderr,
    )
    assert match, stderr
    keys = ("processed", "total", "retries", "released", "duplicates", "elapsed")
    return dict(zip(keys, match.groups(), strict=True))


def test_demo_with_threads(cli: CLI) -> None:
    result = cli.run("demo", "--messages", "400", "--fail-rate", "0.2", timeout=90)
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stderr)
    assert summary["processed"] == summary["total"] == "400"
    assert summary["duplicates"] == "0"
    assert int(summary["retries"]) > 40  # about 20 % failed their first delivery
    assert "every message handled exactly once" in result.stderr
    # Not a TTY: plain progress lines, no carriage returns.
    assert "\r" not in result.stderr
    assert re.search(r"^done \d+/400 .* msg/s  in flight \d+$", result.stderr, re.M)


def test_demo_with_processes(cli: CLI) -> None:
    result = cli.run(
        "demo",
        "--messages",
        "200",
        "--processes",
        "--handlers",
        "2",
        "--bulk-size",
        "5",
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stderr)
    assert (summary["processed"], summary["duplicates"]) == ("200", "0")
    assert "handler processes" in result.stderr


def test_demo_on_a_given_queue(cli: CLI, db_url: str) -> None:
    result = cli.run("demo", "--messages", "50", "--queue", db_url + "&retry_delay=0.01")
    assert result.returncode == 0, result.stderr
    assert cli.stats(db_url)["depth"] == 0


def test_demo_ignores_the_queue_of_the_environment(cli: CLI, db_url: str) -> None:
    # The README's Dockerfile sets QUEUE_CONSUMER_QUEUE to the production queue.
    assert cli.run("send", db_url, "-", input="1\n2\n3\n4\n5\n").returncode == 0
    result = cli.run("demo", "--messages", "20", QUEUE_CONSUMER_QUEUE=db_url)
    assert result.returncode == 0, result.stderr
    assert "queue-consumer-demo-" in result.stderr  # its own temp-dir queue
    assert cli.stats(db_url)["depth"] == 5


def test_demo_refuses_a_queue_that_holds_messages(cli: CLI, db_url: str) -> None:
    assert cli.run("send", db_url, "-", input="1\n2\n3\n4\n5\n").returncode == 0
    result = cli.run("demo", "--messages", "20", "--queue", db_url)
    assert result.returncode == 2, result.stderr
    assert "is not empty (depth 5, visible 5)" in result.stderr
    stats = cli.stats(db_url)
    assert (stats["depth"], stats["in_flight"]) == (5, 0)
    assert not cli.processed()


def test_demo_gives_back_messages_that_are_not_its_own(tmp_path: Path) -> None:
    # A producer that puts a message on the queue while the demo runs: the demo releases it
    # untouched (attempts not counted), and stops.
    queue = SQLiteQueue(tmp_path / "q.db", queue="q", retry_delay=0.01)
    own = OwnMessages(queue, "run1")
    mine = json.dumps({"demo": "run1", "n": 0})
    queue.put_many([mine, "user message", json.dumps({"demo": "run2", "n": 1})])
    assert [m.body for m in own.get()] == [mine]
    assert own.foreign == 2 and own.foreign_seen.is_set()
    stats = queue.stats()
    assert (stats["visible"], stats["in_flight"]) == (2, 1)
    assert sorted(m.attempts for m in queue.get()) == [1, 1]  # the release spent no attempt
    queue.close()


def test_demo_removes_its_temp_dir_on_sigterm(cli: CLI, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    process = cli.start(
        "demo", "--messages", "20000", "--work-time", "0.01", name="demo", TMPDIR=str(tmp)
    )
    cli.wait_log("in flight", name="demo")  # its progress line: consuming
    assert list(tmp.iterdir())  # the demo's queue-consumer-demo-* dir
    assert cli.stop(process, signal.SIGTERM) == 130
    assert "demo: interrupted" in cli.log("demo")
    assert list(tmp.iterdir()) == []


def test_demo_progress_rewrites_one_line_on_a_tty(cli: CLI) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "queue_consumer", "demo", "--messages", "100"],
            cwd=cli.cwd,
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=90) == 0, output.decode()
    finally:
        os.close(leader)
    text = output.decode()
    assert "\r\x1b[2Kdone " in text
    assert "duplicates 0" in text
