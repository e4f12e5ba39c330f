"""Logging: configured only by the command, as text or as JSON lines."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from cli_helpers import CLI

from queue_consumer._logging import JSONFormatter


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
        "import logging, queue_consumer.cli, queue_consumer._demo, queue_consumer._urls;"
        "root = logging.getLogger();"
        "print(len(root.handlers), root.level)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["0", str(logging.WARNING)]


def test_log_level_and_text_format(cli: CLI) -> None:
    result = cli.run("stats", "memory://q", "--log-level", "debug")
    assert result.returncode == 0, result.stderr
    quiet = cli.run("stats", "memory://q", "--log-level", "error")
    assert quiet.stderr == ""
