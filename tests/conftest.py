"""Shared test plumbing: real servers skip locally when absent but fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = bool(os.environ.get("CI"))


def require_server(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when ``name`` does not listen on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable on {host}:{port} ({exc})"
    if IN_CI:
        pytest.fail(f"{reason}; CI must run these tests, not skip them")
    pytest.skip(reason)


@pytest.fixture(params=["threads", "processes"])
def thread_mode(request: pytest.FixtureRequest) -> bool:
    """Run a test under both pools: True = with_thread_executor (threads)."""
    return bool(request.param == "threads")
