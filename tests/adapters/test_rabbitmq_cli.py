"""The command line on amqp:// URLs: send, stats and run, each in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rabbitmq_server import make_queue, rabbit

from queue_consumer.adapters.rabbitmq import RabbitMQQueue
from queue_consumer.testing import wait_until

__all__ = ["make_queue", "rabbit"]  # fixtures

TASKS = """
import os

def handle(messages):
    for message in messages:
        with open("processed.txt", "a") as out:
            out.write(f"{message.body}\\n")
"""


def cli(cwd: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queue_consumer", *args],
        cwd=cwd,
        env=_env(cwd),
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUE_CONSUMER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), *filter(None, [env.get("PYTHONPATH")])])
    return env


def stats(cwd: Path, url: str) -> dict[str, Any]:
    result = cli(cwd, "stats", url, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_send_stats_run_on_amqp(
    make_queue: Callable[..., RabbitMQQueue], rabbit: str, tmp_path: Path
) -> None:
    queue = make_queue()  # declared (and deleted at the end) by the fixture
    url = f"{rabbit}?queue={queue.queue}&wait_time=0.2&retry_delay=0.05&max_retry_delay=0.2"
    (tmp_path / "tasks.py").write_text(TASKS)
    bodies = [f"job-{n}" for n in range(25)]
    sent = cli(tmp_path, "send", url, "-", input="\n".join(bodies))
    assert (sent.returncode, sent.stdout) == (0, "sent 25 messages\n"), sent.stderr
    before = stats(tmp_path, url)
    assert before["depth"] == 25 and before["in_flight"] is None
    assert before["dead_letters"] == 0
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [sys.executable, "-m", "queue_consumer", "run", "tasks:handle", "--queue", url],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        out = tmp_path / "processed.txt"
        wait_until(
            lambda: out.exists() and len(out.read_text().split()) >= 25,
            timeout=60,
            message="all processed",
        )
        wait_until(lambda: stats(tmp_path, url)["depth"] == 0, timeout=30)
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    assert sorted(out.read_text().split()) == sorted(bodies)
    assert "guest:guest" not in (tmp_path / "run.log").read_text()
