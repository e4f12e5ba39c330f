"""`queue-consumer run`: consumes a queue until SIGTERM, configured by flags or env vars."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import CLI

from queue_consumer.testing import wait_until

FAST = "&wait_time=0.1&retry_delay=0.05"  # no busy polling on an empty queue


def _fill(cli: CLI, url: str, count: int) -> list[str]:
    bodies = [json.dumps({"n": n}) for n in range(count)]
    (cli.cwd / "bodies.jsonl").write_text("\n".join(bodies) + "\n")
    result = cli.run("send", url, "--file", "bodies.jsonl")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sent {count} messages"
    return bodies


def _drained(cli: CLI, url: str, bodies: list[str]) -> bool:
    if set(cli.processed()) != set(bodies):
        return False
    stats = cli.stats(url)
    return stats["depth"] == 0 and stats["in_flight"] == 0


def test_run_consumes_everything_and_sigterm_exits_0(cli: CLI, db_url: str) -> None:
    url = db_url + FAST
    bodies = _fill(cli, url, 60)
    process = cli.start("run", "tasks:handle", "--queue", url, "--workers", "2", "--handlers", "3")
    wait_until(lambda: _drained(cli, url, bodies), timeout=60, message="queue drained")
    assert cli.stop(process) == 0, cli.log()
    assert sorted(cli.processed()) == sorted(bodies)  # each exactly once
    log = cli.log()
    assert "stopped: 60 succeeded, 0 failed" in log
    assert "Traceback" not in log


def test_env_vars_configure_run_and_flags_win(cli: CLI, db_url: str) -> None:
    url = db_url + FAST
    bodies = _fill(cli, url, 20)
    process = cli.start(
        "run",
        "--workers",
        "1",
        QUEUE_CONSUMER_QUEUE=url,
        QUEUE_CONSUMER_HANDLER="tasks:handle",
        QUEUE_CONSUMER_WORKERS="not a number",
        QUEUE_CONSUMER_BULK_SIZE="5",
        QUEUE_CONSUMER_LOG_FORMAT="json",
    )
    wait_until(lambda: _drained(cli, url, bodies), timeout=60, message="queue drained")
    assert cli.stop(process) == 0, cli.log()
    records = [json.loads(line) for line in cli.log().splitlines()]
    [started] = [r for r in records if r["message"].startswith("consuming ")]
    assert "max_workers=1" in started["message"]
    assert "messages_bulk_size=5" in started["message"]
    assert {"time", "level", "logger", "message"} <= set(started)


def test_processes_with_initializer(cli: CLI, db_url: str) -> None:
    url = db_url + FAST
    bodies = _fill(cli, url, 30)
    process = cli.start(
        "run",
        "tasks:handle",
        "--queue",
        url,
        "--handlers",
        "2",
        "--bulk-size",
        "3",
        "--initializer",
        "tasks:init",
        QUEUE_CONSUMER_PROCESSES="yes",  # the same as --processes
    )
    wait_until(lambda: _drained(cli, url, bodies), timeout=60, message="queue drained")
    assert cli.stop(process) == 0, cli.log()
    assert "handler slot(s) in processes" in cli.log()
    pids = set(cli.processed_by_pid())
    assert str(process.pid) not in pids  # handled in child processes
    initialised = {p.name.removeprefix("init-") for p in cli.cwd.glob("init-*")}
    assert pids <= initialised


def test_handler_can_be_an_attribute_of_an_object(cli: CLI, db_url: str) -> None:
    url = db_url + FAST
    bodies = _fill(cli, url, 10)
    process = cli.start("run", "tasks:jobs.handle", "--queue", url, "--workers", "1")
    wait_until(lambda: _drained(cli, url, bodies), timeout=60, message="queue drained")
    assert cli.stop(process, signal.SIGINT) == 0, cli.log()


def test_two_runs_on_one_file_share_the_work(cli: CLI, db_url: str) -> None:
    url = db_url + FAST + "&max_messages=2"
    env = {"TASKS_DELAY": "0.01"}
    first = cli.start("run", "tasks:handle", "--queue", url, "--handlers", "2", name="a", **env)
    second = cli.start("run", "tasks:handle", "--queue", url, "--handlers", "2", name="b", **env)
    cli.wait_log("consumer started", name="a")
    cli.wait_log("consumer started", name="b")
    bodies = _fill(cli, url, 200)
    wait_until(lambda: _drained(cli, url, bodies), timeout=90, message="queue drained")
    assert cli.stop(first) == 0, cli.log("a")
    assert cli.stop(second) == 0, cli.log("b")
    assert sorted(cli.processed()) == sorted(bodies)  # nothing lost, nothing twice
    by_pid = cli.processed_by_pid()
    assert set(by_pid) == {str(first.pid), str(second.pid)}, "both processes took work"


def test_help_lists_commands_options_and_env_vars(cli: CLI) -> None:
    result = cli.run("--help")
    assert result.returncode == 0
    for command in ("run", "send", "stats", "redrive", "demo", "Exit codes"):
        assert command in result.stdout
    run_help = cli.run("run", "--help").stdout
    for option in (
        "--queue",
        "--workers",
        "--handlers",
        "--bulk-size",
        "--polling-time",
        "--processes",
        "--initializer",
        "--handler-timeout",
        "--max-stuck-handlers",
        "--shutdown-timeout",
        "--log-format",
        "QUEUE_CONSUMER_WORKERS",
        "QUEUE_CONSUMER_HANDLER",
    ):
        assert option in run_help


def test_console_script_is_the_same_command(cli: CLI) -> None:
    script = Path(sys.executable).with_name("queue-consumer")
    if not script.exists():
        pytest.skip("the queue-consumer script is not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, env=cli.env
    )
    assert result.returncode == 0
    assert result.stdout == cli.run("--help").stdout


def test_every_consumer_setting_has_a_run_option() -> None:
    """One source of truth: the CLI is checked against Config, so none is forgotten."""
    from queue_consumer._config import SETTINGS
    from queue_consumer.cli._options import RUN_SETTINGS, build_parser

    assert set(RUN_SETTINGS.values()) | {"handler", "hooks"} == set(SETTINGS)
    args = build_parser().parse_args(["run", "m:h", "--queue", "memory://x"])
    for dest in RUN_SETTINGS:
        assert hasattr(args, dest), f"`run` has no option for {dest}"
