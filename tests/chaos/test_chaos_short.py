"""CHAOS (short version): the fault-injection suite's quick run, as CI runs it.

``python -m benchmarks.chaos --quick`` in a subprocess: a few faults per queue (SIGKILL of a
consumer, a rolling deploy, handler faults, the SQS fault proxy, a server-side connection
cut or broker restart for each broker adapter that imports), 200 messages, 2 consumer
processes of the real CLI. Every row that ran must have lost nothing. The full table is
``make chaos`` (docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(320)]


QUEUES = ("sqlite", "sqs", "postgres", "redis", "rabbitmq", "nats")
MUST_RUN = {"sqlite", "sqs"}  # no shared server needed: never skipped


@pytest.mark.parametrize("queue", QUEUES)
def test_chaos_short_loses_nothing(queue: str, tmp_path: Path) -> None:
    out = tmp_path / "RELIABILITY.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--quick", "--queues", queue, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = out.read_text() if out.exists() else ""
    print(report)
    assert done.returncode == 0, done.stderr[-4000:] + report
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ")][1:]
    ran = [row for row in rows if not row[2].startswith("skipped")]
    if queue in MUST_RUN or os.environ.get("CI"):  # CI has every server: a skip is a failure
        assert ran, report
    for row in ran:
        sent, handled, lost = int(row[2]), int(row[3]), row[5]
        assert lost == "0", f"lost messages: {row}"
        assert 0 < handled <= sent, row
    assert re.search(r"lost in total: 0;", report), report
