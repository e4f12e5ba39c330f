"""The command against SQS (moto's server): plain queue URLs route to the SQS adapter."""

from __future__ import annotations

import sys
from pathlib import Path

from cli_helpers import CLI

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


def test_send_stats_and_run_on_an_sqs_queue_url(
    cli: CLI, moto_endpoint: str, make_queue: object
) -> None:
    queue_url = make_queue()  # type: ignore[operator]
    assert queue_url.startswith("http://127.0.0.1:")  # no sqs. host: routed by its path
    cli.env.update(aws_environment(moto_endpoint))
    bodies = [f"job-{n}" for n in range(25)]

    result = cli.run("send", queue_url, "-", input="\n".join(bodies))
    assert (result.returncode, result.stdout) == (0, "sent 25 messages\n"), result.stderr
    assert "botocore" not in result.stderr  # its INFO chatter ("Found credentials") is muted
    assert cli.stats(queue_url)["ApproximateNumberOfMessages"] == 25

    process = cli.start("run", "tasks:handle", "--queue", f"{queue_url}?wait=1", "--workers", "2")
    wait_until(lambda: len(cli.processed()) >= 25, timeout=60, message="all processed")

    def settled() -> bool:
        stats = cli.stats(queue_url)
        return (
            stats["ApproximateNumberOfMessages"] + stats["ApproximateNumberOfMessagesNotVisible"]
            == 0
        )

    wait_until(settled, timeout=60, message="every message deleted")
    assert cli.stop(process) == 0, cli.log()
    # moto may lose a concurrent delete (see sqs_server): nothing lost, repeats reported.
    assert set(cli.processed()) == set(bodies)
