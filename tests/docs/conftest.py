"""Fixtures for the documentation tests: the moto SQS server of tests/adapters/sqs_server.py."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))

# boto3 or moto missing: only the SQS examples skip.
with contextlib.suppress(pytest.skip.Exception):
    from sqs_server import moto_endpoint

__all__ = ["moto_endpoint"]
