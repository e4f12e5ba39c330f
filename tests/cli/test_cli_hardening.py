"""What a new user hit (issue 8): exit codes, typos, partial sends, dead letters, FIFO groups."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import CLI

from queue_consumer.adapters.sqlite import SQLiteQueue
from queue_consumer.testing import wait_until

# The SQS adapter's own test plumbing: moto's server in its own process.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))
from sqs_server import (
    aws_environment,
    make_queue,
    moto_endpoint,
    sqs_client,
    sqs_env,
)

__all__ = ["make_queue", "moto_endpoint", "sqs_client", "sqs_env"]  # fixtures, used by name

USAGE = 2


# -- exit 2 for what restarting cannot fix ---------------------------------------------


def _without_aws(cli: CLI, home: Path) -> None:
    for name in list(cli.env):
        if name.startswith("AWS_"):
            del cli.env[name]
    cli.env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "none"),
        AWS_EC2_METADATA_DISABLED="true",  # no instance role to look for
    )


def test_missing_aws_region_or_credentials_exit_2(cli: CLI, tmp_path: Path) -> None:
    _without_aws(cli, tmp_path)
    result = cli.run("stats", "sqs://orders")
    assert result.returncode == USAGE, result.stderr
    assert "no AWS region for SQS" in result.stderr
    result = cli.run("run", "tasks:handle", "--queue", "sqs://orders?region=eu-west-1")
    assert result.returncode == USAGE, result.stderr
    assert "no AWS credentials for SQS" in result.stderr


def _without_root_override() -> list[str]:
    """A prefix that runs a command subject to file permissions, even as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv: file permissions cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_a_read_only_sqlite_file_exits_2(cli: CLI, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    SQLiteQueue(folder / "q.db").close()
    url = f"sqlite:///{folder / 'q.db'}"
    (folder / "q.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        result = subprocess.run(
            [*_without_root_override(), sys.executable, "-m", "queue_consumer", "send", url, "x"],
            cwd=cli.cwd,
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        folder.chmod(0o755)
    assert result.returncode == USAGE, result.stderr
    assert "is not writable" in result.stderr


def test_non_utf8_input_to_send_exits_2_and_says_what_was_sent(
    cli: CLI, db_url: str, tmp_path: Path
) -> None:
    lines = b"".join(f"{n}\n".encode() for n in range(1, 700)) + b"\xff\xfe\n701\n"
    (tmp_path / "in.txt").write_bytes(lines)
    with (tmp_path / "in.txt").open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "queue_consumer", "send", db_url, "-"],
            cwd=cli.cwd,
            env=cli.env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == USAGE, result.stderr
    # Everything before the bad line went (one chunk of 500, then the 199 before it), so a
    # retry resumes at line 700 without a duplicate.
    assert "sent 699 before the error at line 700: stdin line 700 is not UTF-8" in result.stderr
    assert cli.stats(db_url)["depth"] == 699


def test_a_failing_put_says_how_many_were_sent(cli: CLI, tmp_path: Path) -> None:
    # A queue (from the fake plugin's entry point) whose put_many fails on its third chunk.
    result = cli.run("send", "flaky://x", "-", input="".join(f"{n}\n" for n in range(1, 1300)))
    assert result.returncode == 1, result.stderr
    assert "sent 1000 before the error at line 1001: RuntimeError: broker down" in result.stderr


def test_send_to_a_memory_queue_is_refused(cli: CLI) -> None:
    result = cli.run("send", "memory://jobs", "x")
    assert result.returncode == USAGE
    assert "vanishes when `send` exits" in result.stderr
    assert result.stdout == ""  # no "sent 1 message"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--workers", "99999"], "--workers: must be an integer from 1 to 1024, not '99999'"),
        (["--handlers", "99999"], "--handlers: must be an integer from 1 to 4096, not '99999'"),
        (["--handler-timeout", "0"], "--handler-timeout: must be a number of seconds > 0"),
    ],
)
def test_out_of_range_options_exit_2(cli: CLI, option: list[str], expected: str) -> None:
    result = cli.run("run", "tasks:handle", "--queue", "memory://q", *option)
    assert result.returncode == USAGE, result.stderr
    assert expected in result.stderr


def test_both_handler_timeout_checks_give_one_bound(cli: CLI) -> None:
    from queue_consumer import Consumer, MemoryQueue
    from queue_consumer.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="a number of seconds > 0"):
        Consumer(MemoryQueue(), print, handler_timeout=0)
    for value in ("0", "-1"):  # -1 was "must be >= 0" on the command line, "> 0" in Python
        result = cli.run("run", "tasks:handle", "--queue", "memory://q", "--handler-timeout", value)
        assert "a number of seconds > 0" in result.stderr


# -- typos are not silent ----------------------------------------------------------------


def test_an_unknown_environment_variable_warns_with_the_closest_name(cli: CLI) -> None:
    result = cli.run("stats", "memory://q", QUEUE_CONSUMER_BULKSIZE="5")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "QUEUE_CONSUMER_BULKSIZE" in line]
    assert len(warnings) == 1, result.stderr
    assert "did you mean QUEUE_CONSUMER_BULK_SIZE?" in warnings[0]
    # A variable another command reads is known (a worker's environment sets them all).
    result = cli.run(
        "stats", "memory://q", QUEUE_CONSUMER_WORKERS="2", QUEUE_CONSUMER_HANDLER="t:h"
    )
    assert "unknown environment variable" not in result.stderr


@pytest.mark.parametrize("command", ["stats", "redrive", "dead-letters"])
def test_a_mistyped_sqlite_path_is_an_error_not_a_new_database(
    cli: CLI, tmp_path: Path, command: str
) -> None:
    SQLiteQueue(tmp_path / "jobs.db").close()
    result = cli.run(command, "sqlite:///jbos.db")
    assert result.returncode == USAGE, result.stderr
    assert "no SQLite queue file at" in result.stderr and "jbos.db" in result.stderr
    assert not (tmp_path / "jbos.db").exists()


# -- dead letters and FIFO groups from the shell -----------------------------------------


def test_dead_letters_lists_id_attempts_and_the_errors_first_line(
    cli: CLI, db_url: str, tmp_path: Path
) -> None:
    with SQLiteQueue(tmp_path / "jobs.db", "jobs", max_attempts=1) as queue:
        queue.put_many(["a", "b", "c"])
        messages = queue.get()
        trace = "Traceback (most recent call last):\n  File 'x.py'\nValueError: bad one\nmore"
        queue.reject(messages[:2], error=trace)
        queue.reject(messages[2:], error="timed out\nafter 3 s")
        ids = [m.id for m in messages]
    result = cli.run("dead-letters", db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "attempts", "last", "error"]
    assert [line.split(None, 2) for line in lines[1:]] == [
        [str(ids[0]), "1", "ValueError: bad one"],
        [str(ids[1]), "1", "ValueError: bad one"],
        [str(ids[2]), "1", "timed out"],
    ]
    result = cli.run("dead-letters", db_url, "--json", "--limit", "1")
    assert json.loads(result.stdout) == [{"id": ids[0], "attempts": 1, "last_error": trace}]
    # The ids feed redrive --id.
    assert cli.run("redrive", db_url, "--id", str(ids[1])).stdout == "re-drove 1 dead letter\n"
    result = cli.run("dead-letters", db_url, "--json")
    assert [row["id"] for row in json.loads(result.stdout)] == [ids[0], ids[2]]


def test_send_group_id_to_a_fifo_queue_and_refused_elsewhere(
    cli: CLI, moto_endpoint: str, make_queue: object, sqs_client: object, db_url: str
) -> None:
    cli.env.update(aws_environment(moto_endpoint))
    fifo = make_queue(fifo=True)  # type: ignore[operator]
    result = cli.run("send", fifo, "-", "--group-id", "customer-7", input="a\nb\n")
    assert result.returncode == 0, result.stderr
    received = sqs_client.receive_message(  # type: ignore[attr-defined]
        QueueUrl=fifo, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
    )["Messages"]
    assert {m["Attributes"]["MessageGroupId"] for m in received} == {"customer-7"}
    standard = make_queue()  # type: ignore[operator]
    for url in (standard, db_url):
        result = cli.run("send", url, "x", "--group-id", "g")
        assert result.returncode == USAGE, result.stderr
        assert "has no message groups" in result.stderr


# -- fetched messages stay leased while they wait for a handler --------------------------


def test_parked_messages_stay_leased_so_two_consumers_handle_each_once(
    cli: CLI, db_url: str
) -> None:
    # The repro: one get() takes the whole batch, one handler slot takes it one
    # second at a time, so the last messages wait in memory past their 2 s lease. With the
    # heartbeat (on by default) the other consumer never gets them: each is handled once.
    url = db_url + "&visibility_timeout=2&wait_time=0.2"
    bodies = [str(n) for n in range(6)]
    assert cli.run("send", url, "-", input="\n".join(bodies)).returncode == 0
    consumers = [
        cli.start(
            "run", "tasks:handle", "--queue", url, "--handlers", "1", name=f"c{i}", TASKS_DELAY="1"
        )
        for i in range(2)
    ]
    wait_until(lambda: len(cli.processed()) >= len(bodies), timeout=60, message="all handled")
    wait_until(lambda: cli.stats(url)["depth"] == 0, timeout=30, message="queue empty")
    for process in consumers:
        assert cli.stop(process) == 0
    assert sorted(cli.processed()) == sorted(bodies)  # each exactly once


def test_the_summary_at_exit_shows_released_apart_from_failed(cli: CLI, db_url: str) -> None:
    # One slot, a 1 s handler, a batch of 10: at SIGTERM the chunks still waiting for the
    # slot go back untried. They are released, not failed, and the summary says so.
    url = db_url + "&wait_time=0.2"
    assert cli.run("send", url, "-", input="\n".join(map(str, range(10)))).returncode == 0
    process = cli.start(
        "run", "tasks:handle", "--queue", url, "--workers", "1", "--handlers", "1", TASKS_DELAY="1"
    )
    wait_until(lambda: len(cli.processed()) >= 1, timeout=60, message="one handled")
    assert cli.stop(process) == 0, cli.log()
    [line] = [line for line in cli.log().splitlines() if "stopped:" in line]
    match = re.search(r"stopped: (\d+) succeeded, 0 failed, (\d+) released \(never tried", line)
    assert match, line
    succeeded, released = map(int, match.groups())
    assert succeeded + released == 10 and released >= 1
    stats = cli.stats(url)
    assert (stats["depth"], stats["in_flight"]) == (released, 0)


def test_a_json_lines_file_that_is_not_utf8_exits_2_and_sends_nothing(
    cli: CLI, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "bad.jsonl").write_bytes(b'{"n": 1}\n"\xe9"\n')
    result = cli.run("send", db_url, "--file", "bad.jsonl")
    assert result.returncode == USAGE, result.stderr
    assert "bad.jsonl line 2 is not UTF-8 text" in result.stderr
    assert not (tmp_path / "jobs.db").exists()  # checked whole before the queue is opened
