"""Logging: configured only by the command, as text or as JSON lines."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import pytest
from cli_helpers import CLI

from queue_consumer.cli import main
from queue_consumer.cli._logging import JSONFormatter


def _record(exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord(
        "queue_consumer.test",
        logging.WARNING,
        __file__,
        1,
        "hello %s",
        ("world",),
        exc_info,  # type: ignore[arg-type]
    )


def test_json_formatter_writes_one_object_per_line() -> None:
    entry = json.loads(JSONFormatter().format(_record()))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "queue_consumer.test"
    assert entry["message"] == "hello world"
    assert entry["time"].endswith("+00:00")
    assert "exc" not in entry


def test_json_formatter_keeps_the_traceback_in_exc() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = JSONFormatter().format(_record(sys.exc_info()))
    assert "\n" not in line
    entry = json.loads(line)
    assert "ValueError: boom" in entry["exc"]


def test_importing_the_cli_configures_no_logging() -> None:
    code = (
        "import logging, queue_consumer.cli, queue_consumer.cli._demo, queue_consumer._urls;"
        "root = logging.getLogger();"
        "print(len(root.handlers), root.level)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["0", str(logging.WARNING)]


def test_text_logs_and_the_log_level(cli: CLI) -> None:
    process = cli.start("run", "tasks:handle", "--queue", "memory://idle", "--workers", "1")
    cli.wait_log("consumer started")
    assert cli.stop(process) == 0, cli.log()
    log = cli.log()
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    queue_consumer.cli: consuming memory://idle",
        log,
        re.M,
    ), log
    assert "SIGTERM: shutting down gracefully" in log


def test_log_level_filters_and_json_lines(cli: CLI) -> None:
    loud = cli.run("demo", "--messages", "20", "--log-level", "info")
    assert loud.returncode == 0, loud.stderr
    assert " INFO    queue_consumer.consumer: consumer started" in loud.stderr
    assert "WARNING queue_consumer.worker: handler failed" in loud.stderr

    quiet = cli.run("demo", "--messages", "20")  # the demo logs errors only, by default
    assert quiet.returncode == 0, quiet.stderr
    assert "INFO" not in quiet.stderr
    assert "WARNING" not in quiet.stderr

    as_json = cli.run("demo", "--messages", "20", "--log-level", "warning", "--log-format", "json")
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stderr.splitlines() if line.startswith("{")]
    assert records, as_json.stderr
    assert {r["level"] for r in records} == {"WARNING"}
    assert all("PartialFailure" in r["message"] for r in records)


def test_main_in_process_leaves_logging_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    assert main(["stats", "memory://in-process", "--json", "--log-level", "debug"]) == 0
    assert json.loads(capsys.readouterr().out)["visible"] == 0
    assert (list(root.handlers), root.level) == before
