"""The command against PostgreSQL: send, stats and run on a postgresql:// URL."""

from __future__ import annotations

import sys
from pathlib import Path

from cli_helpers import CLI

from queue_consumer.testing import wait_until

# The PostgreSQL adapter's own test plumbing: a schema per test on the local server.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))
from postgres_helpers import Database, pg

__all__ = ["pg"]  # the fixture, used by name


def test_send_stats_run_and_redrive_on_a_postgresql_url(cli: CLI, pg: Database) -> None:
    url = pg.url(wait_time=0.5, max_attempts=1)
    bodies = [f"job-{n}" for n in range(25)]
    result = cli.run("send", url, "-", input="\n".join(bodies))
    assert (result.returncode, result.stdout) == (0, "sent 25 messages\n"), result.stderr
    assert cli.stats(url) == {
        "depth": 25,
        "visible": 25,
        "delayed": 0,
        "in_flight": 0,
        "dead_letters": 0,
    }

    process = cli.start("run", "tasks:handle", "--queue", url, "--workers", "2")
    wait_until(lambda: len(cli.processed()) >= 25, timeout=60, message="all processed")
    wait_until(lambda: cli.stats(url)["in_flight"] == 0, timeout=30, message="all cleaned up")
    assert cli.stop(process) == 0, cli.log()
    assert sorted(cli.processed()) == sorted(bodies)
    assert cli.stats(url)["depth"] == 0

    # A failing handler with max_attempts=1: straight to the dead letters; redrive them.
    assert cli.run("send", url, "poison").returncode == 0
    failing = cli.start("run", "tasks:fail", "--queue", url, name="fail")
    wait_until(lambda: cli.stats(url)["dead_letters"] == 1, timeout=60, message="dead letter")
    assert cli.stop(failing) == 0, cli.log("fail")
    result = cli.run("redrive", url)
    assert result.returncode == 0, result.stderr
    assert cli.stats(url)["depth"] == 1


def test_the_password_of_a_url_never_shows(cli: CLI, pg: Database) -> None:
    url = pg.url().replace("postgres@", "postgres:s3cret-Pa55@")  # trusted: sent, ignored
    for args in (["send", url, "x"], ["stats", url], ["redrive", url]):
        result = cli.run(*args, "--log-level", "debug")
        assert result.returncode == 0, result.stderr
        assert "s3cret" not in result.stdout + result.stderr
