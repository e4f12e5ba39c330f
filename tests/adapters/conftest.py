"""Fixtures shared by the adapter tests. The SQS ones live in ``sqs_server.py``."""

from __future__ import annotations

import pytest

# Fixtures imported into a conftest are visible to every test below it. A missing boto3 or
# moto skips only the SQS tests (importorskip in sqs_server).
try:
    if __package__:
        from .sqs_server import make_queue, moto_endpoint, sqs_client, sqs_env
    else:
        from sqs_server import make_queue, moto_endpoint, sqs_client, sqs_env
except pytest.skip.Exception:
    pass

__all__ = ["make_queue", "moto_endpoint", "sqs_client", "sqs_env"]
