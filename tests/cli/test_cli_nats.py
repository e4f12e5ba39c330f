"""The command against NATS JetStream (the machine's nats-server): send, stats, run, redrive."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import CLI

from queue_consumer.testing import wait_until

# The JetStream adapter's own test plumbing (skips without nats-py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))
from nats_server import SHARED, delete_streams, shared_server, unique

__all__ = ["shared_server"]  # a fixture, used by name


@pytest.fixture
def stream(shared_server: str) -> Iterator[str]:
    name = unique("QCCLI")
    yield name
    delete_streams(shared_server, [name, f"{name}_DEAD"])


def test_send_stats_run_and_redrive_on_a_nats_url(cli: CLI, stream: str) -> None:
    url = f"{SHARED}?stream={stream}&wait=0.5"
    bodies = [f"job-{n}" for n in range(25)]

    result = cli.run("send", url, "-", input="\n".join(bodies))
    assert (result.returncode, result.stdout) == (0, "sent 25 messages\n"), result.stderr
    stats = cli.stats(url)
    assert (stats["depth"], stats["in_flight"], stats["dead_letters"]) == (25, 0, 0)

    process = cli.start("run", "tasks:handle", "--queue", url, "--workers", "2")
    wait_until(lambda: len(cli.processed()) >= 25, timeout=60, message="all processed")

    from queue_consumer.adapters.nats import from_url

    watcher = from_url(url)  # waits ask in-process: a CLI call per poll costs a second

    def settled() -> bool:
        stats = watcher.stats()
        return stats["depth"] == 0 and stats["in_flight"] == 0

    wait_until(settled, timeout=60, interval=0.2, message="every message acknowledged")
    assert cli.stop(process) == 0, cli.log()
    assert sorted(cli.processed()) == sorted(bodies)

    # A handler that always fails: after max_attempts the message is a dead letter.
    failing = f"{url}&max_attempts=2&retry_delay=0"
    assert cli.run("send", failing, "poison").returncode == 0
    process = cli.start("run", "tasks:fail", "--queue", failing, name="fail")
    wait_until(
        lambda: watcher.stats()["dead_letters"] == 1,
        timeout=60,
        interval=0.2,
        message="dead-lettered",
    )
    assert cli.stop(process) == 0, cli.log("fail")
    result = cli.run("redrive", url)
    assert result.returncode == 0, result.stderr
    stats = cli.stats(url)
    assert (stats["dead_letters"], stats["depth"]) == (0, 1)
    watcher.close()
