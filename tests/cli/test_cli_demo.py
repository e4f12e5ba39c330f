"""`queue-consumer demo`: seconds long, live progress, and a summary proving exactly-once."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from cli_helpers import CLI


def _summary(stderr: str) -> dict[str, str]:
    match = re.search(
        r"processed (\d+) of (\d+), retries (\d+), duplicates (\d+), elapsed ([\d.]+)s", stderr
    )
    assert match, stderr
    keys = ("processed", "total", "retries", "duplicates", "elapsed")
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
