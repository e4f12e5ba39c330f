"""Bad input: a one-line message on stderr, no traceback, and the documented exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import CLI

USAGE, ERROR, STUCK = 2, 1, 3


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("queue-consumer")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "tasks:handle", "--queue", "kafka://broker/jobs"], "unknown queue URL scheme"),
        (["run", "tasks:handle", "--queue", "jobs.db"], "not a queue URL: 'jobs.db'"),
        (["run", "no_such_module:handle", "--queue", "memory://q"], "cannot import handler"),
        (["run", "tasks:nope", "--queue", "memory://q"], "'tasks' has no 'nope'"),
        (["run", "tasks:not_callable", "--queue", "memory://q"], "is not callable"),
        (["run", "tasks", "--queue", "memory://q"], "must look like MODULE:NAME"),
        (["run", "tasks:handle"], "--queue URL is required"),
        (["run", "--queue", "memory://q"], "MODULE:HANDLER is required"),
        (
            ["run", "tasks:handle", "--queue", "memory://q", "--workers", "0"],
            "must be an integer from 1 to 1024",
        ),
        (["run", "tasks:handle", "--queue", "memory://q", "--workers", "x"], "must be an integer"),
        (["run", "tasks:handle", "--queue", "memory://q", "--handler-timeout", "-1"], "> 0"),
        (["run", "tasks:handle", "--queue", "memory://q", "--bogus"], "unrecognized argument"),
        (
            ["run", "tasks:handle", "--queue", "memory://q", "--initializer", "tasks:nope"],
            "cannot import initializer",
        ),
        (["stats", "sqlite:///jobs.db?colour=red"], "unknown option 'colour'"),
        (["stats", "sqlite:///no/such/dir/jobs.db"], "no/such/dir/jobs.db"),
        (["stats"], "queue URL is required"),
        (["send", "sqlite:///j.db", "--file", "missing.jsonl"], "cannot read --file missing.jsonl"),
        (["explode"], "invalid choice: 'explode'"),
        (["redrive", "sqlite:///jobs.db?create=1", "--id", "abc"], "--id: message ids are ints"),
        (["demo", "--fail-rate", "2"], "must be a number from 0 to 1"),
        (["stats", "memory://q", "--log-level", "loud"], "must be one of debug"),
    ],
)
def test_usage_and_configuration_errors_exit_2(cli: CLI, args: list[str], expected: str) -> None:
    result = cli.run(*args)
    assert result.returncode == USAGE, result.stderr
    assert expected in _one_line(result.stderr)


def test_no_command_prints_help_and_exits_2(cli: CLI) -> None:
    result = cli.run()
    assert result.returncode == USAGE
    assert "COMMAND" in result.stderr


def test_a_bad_environment_value_names_the_variable(cli: CLI) -> None:
    result = cli.run("run", "tasks:handle", "--queue", "memory://q", QUEUE_CONSUMER_WORKERS="lots")
    assert result.returncode == USAGE
    line = _one_line(result.stderr)
    assert "environment variable QUEUE_CONSUMER_WORKERS: must be an integer" in line

    result = cli.run("stats", "memory://q", QUEUE_CONSUMER_TRACEBACK="maybe")
    assert result.returncode == USAGE
    assert "QUEUE_CONSUMER_TRACEBACK: must be true or false" in _one_line(result.stderr)


def test_a_missing_optional_dependency_names_the_extra(cli: CLI, tmp_path: Path) -> None:
    # Shadow boto3 / botocore with packages that fail to import, as if not installed.
    for name in ("boto3", "botocore"):
        package = tmp_path / "hide" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n"
        )
    pythonpath = f"{tmp_path / 'hide'}:{cli.env['PYTHONPATH']}"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
    result = cli.run("stats", url, PYTHONPATH=pythonpath)
    assert result.returncode == USAGE, result.stderr
    assert "install queue-consumer[sqs]" in _one_line(result.stderr)


def test_an_unexpected_error_exits_1_with_one_line(cli: CLI) -> None:
    # broken:// comes from an entry point of a fake installed plugin (see conftest).
    result = cli.run("stats", "broken://x")
    assert result.returncode == ERROR
    line = _one_line(result.stderr)
    assert "unexpected error: RuntimeError: the broker exploded" in line
    assert "--traceback" in line


@pytest.mark.parametrize("flag", [["--traceback"], ["--log-level", "debug"]])
def test_traceback_on_request(cli: CLI, flag: list[str]) -> None:
    result = cli.run("stats", "broken://x", *flag)
    assert result.returncode == ERROR
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("the broker exploded")


def test_stuck_handlers_exit_3(cli: CLI, db_url: str) -> None:
    assert cli.run("send", db_url, "slow").returncode == 0
    result = cli.run(
        "run",
        "tasks:stuck",
        "--queue",
        db_url + "&wait_time=0.1",
        "--handler-timeout",
        "0.3",
        "--max-stuck-handlers",
        "0",
        "--handlers",
        "1",
        timeout=90,
    )
    assert result.returncode == STUCK, result.stderr
    assert "ran longer than handler_timeout" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
