"""The command against the local Redis: send, stats, run and redrive on a redis:// URL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import CLI

from queue_consumer.testing import wait_until

# The Redis adapter's own test plumbing (unique streams, removed after the test).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))
from redis_server import delete_stream, redis_url

__all__ = ["redis_url"]  # a fixture, used by name


@pytest.fixture
def stream_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    name = f"qc-cli-{tmp_path.name[-12:]}-{id(tmp_path) % 10_000}"
    yield f"{redis_url}?stream={name}"
    delete_stream(redis_url, name)


def test_send_stats_run_and_redrive_on_a_redis_url(cli: CLI, stream_url: str) -> None:
    bodies = [f"job-{n}" for n in range(25)]
    result = cli.run("send", stream_url, "-", input="\n".join(bodies))
    assert (result.returncode, result.stdout) == (0, "sent 25 messages\n"), result.stderr
    stats = cli.stats(stream_url)
    assert (stats["depth"], stats["in_flight"], stats["dead_letters"]) == (25, 0, 0)

    process = cli.start(
        "run", "tasks:handle", "--queue", f"{stream_url}&block=0.5", "--workers", "2"
    )
    wait_until(lambda: len(cli.processed()) >= 25, timeout=60, message="all processed")
    wait_until(lambda: cli.stats(stream_url)["in_flight"] == 0, timeout=30, message="acked")
    assert cli.stop(process) == 0, cli.log()
    assert sorted(cli.processed()) == sorted(bodies)
    stats = cli.stats(stream_url)
    assert (stats["depth"], stats["stream_length"]) == (0, 0)

    # A poison message: dead after max_attempts, then back with `redrive`.
    assert cli.run("send", stream_url, "poison").returncode == 0
    failing = f"{stream_url}&block=0.2&max_attempts=2&retry_delay=0&reclaim_interval=0"
    process = cli.start("run", "tasks:fail", "--queue", failing, name="fail")
    wait_until(lambda: cli.stats(stream_url)["dead_letters"] == 1, timeout=60, message="dead")
    assert cli.stop(process) == 0, cli.log("fail")
    result = cli.run("redrive", stream_url)
    assert (result.returncode, result.stdout) == (0, "re-drove 1 dead letter\n"), result.stderr
    stats = cli.stats(stream_url)
    assert (stats["depth"], stats["dead_letters"]) == (1, 0)


def test_the_password_stays_out_of_the_commands_output(cli: CLI, stream_url: str) -> None:
    # The local server has no password: AUTH fails, and the error must not show it.
    url = stream_url.replace("redis://", "redis://user:s3cret@")
    result = cli.run("stats", url)
    assert result.returncode != 0
    assert "s3cret" not in result.stdout + result.stderr
    assert "user:***@" in result.stdout + result.stderr or "AUTH" in result.stderr.upper()
