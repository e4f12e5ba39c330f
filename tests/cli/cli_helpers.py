"""Helpers for the command-line tests: a user's tasks module and a runner for the CLI.

Every test runs ``python -m queue_consumer`` in a subprocess, from a temp dir holding
``tasks.py``, the way a user runs ``queue-consumer run tasks:handle``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from queue_consumer.testing import wait_until

#: The user's tasks module. Handlers write one line per processed message: "PID BODY".
TASKS = """
import os, time
from pathlib import Path

OUT = Path(os.environ.get("TASKS_OUT", "processed.txt"))
DELAY = float(os.environ.get("TASKS_DELAY", "0"))


def _record(message):
    body = getattr(message, "body", message)
    # One short append per message: lines from several processes never interleave.
    with OUT.open("a") as out:
        out.write(f"{os.getpid()} {body}\\n")


def handle(messages):
    for message in messages:
        time.sleep(DELAY)
        _record(message)


def fail(messages):
    for message in messages:
        raise RuntimeError(f"cannot handle {message!r}")


def stuck(messages):
    for message in messages:
        time.sleep(3600)


def init():
    Path(f"init-{os.getpid()}").touch()


class Jobs:
    def handle(self, messages):
        for message in messages:
            _record(message)


jobs = Jobs()
not_callable = 42


class BrokenQueue:
    def get(self):
        return []

    def stats(self):
        raise RuntimeError("the broker exploded")


def broken_queue(url):
    return BrokenQueue()


class FlakyQueue:
    # Takes two put_many calls, then the broker goes down.

    def __init__(self):
        self.calls = 0

    def get(self):
        return []

    def put_many(self, bodies):
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("broker down")


def flaky_queue(url):
    return FlakyQueue()
"""

#: A fake installed distribution declaring a queue_consumer.queues entry point.
DIST_INFO = {
    "METADATA": "Metadata-Version: 2.1\nName: tasks-plugin\nVersion: 1.0\n",
    "entry_points.txt": (
        "[queue_consumer.queues]\nbroken = tasks:broken_queue\nflaky = tasks:flaky_queue\n"
    ),
}


class CLI:
    """Runs ``python -m queue_consumer`` in ``cwd`` with a controlled environment."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("QUEUE_CONSUMER_")
        }
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.env["PYTHONUNBUFFERED"] = "1"
        self.processes: list[subprocess.Popen[str]] = []

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "queue_consumer", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, name: str = "run", **env: str) -> subprocess.Popen[str]:
        """Start in the background; stderr goes to ``<name>.log`` so that it never blocks."""
        log = (self.cwd / f"{name}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "queue_consumer", *args],
            cwd=self.cwd,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str = "run") -> str:
        return (self.cwd / f"{name}.log").read_text()

    def wait_log(self, text: str, name: str = "run", timeout: float = 30) -> None:
        wait_until(lambda: text in self.log(name), timeout=timeout, message=f"{text!r} in log")

    def stop(self, process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
        process.send_signal(sig)
        return process.wait(timeout=60)

    def stats(self, url: str) -> dict[str, Any]:
        result = self.run("stats", url, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def processed(self, name: str = "processed.txt") -> list[str]:
        """Bodies the handlers processed, in order, with repeats."""
        path = self.cwd / name
        if not path.exists():
            return []
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines()]

    def processed_by_pid(self, name: str = "processed.txt") -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        path = self.cwd / name
        for line in path.read_text().splitlines() if path.exists() else []:
            pid, body = line.split(" ", 1)
            result.setdefault(pid, []).append(body)
        return result

    def cleanup(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
