"""Fixtures for the command-line tests: a temp dir holding ``tasks.py``, and the CLI runner."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import CLI, DIST_INFO, TASKS


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    (tmp_path / "tasks.py").write_text(textwrap.dedent(TASKS))
    dist = tmp_path / "tasks_plugin-1.0.dist-info"
    dist.mkdir()
    for name, text in DIST_INFO.items():
        (dist / name).write_text(text)
    runner = CLI(tmp_path)
    yield runner
    runner.cleanup()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite queue URL in the test's temp dir."""
    return f"sqlite:///{tmp_path / 'jobs.db'}?queue=jobs"
