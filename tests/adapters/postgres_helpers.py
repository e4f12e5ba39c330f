"""Test plumbing for the PostgreSQL adapter: the local server, a schema per test.

The server is shared (other engineers, CI): every test gets its own schema, named
``qc_test_<uuid>``, and an ``application_name`` of its own (to find, and terminate, exactly
its own backends); the schema is dropped at the end. Nothing else is touched.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

psycopg = pytest.importorskip("psycopg")

from queue_consumer.adapters.postgres import PostgresQueue  # noqa: E402


def _root_conftest() -> Any:
    # tests/conftest.py, by path: "import conftest" here would find tests/adapters/conftest.py.
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("queue_consumer_tests_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_root = _root_conftest()
require_server = _root.require_server
IN_CI: bool = _root.IN_CI

HOST, PORT = "127.0.0.1", 5432
SERVER = os.environ.get("QC_TEST_POSTGRES", f"postgresql://postgres@{HOST}:{PORT}/test")


class Database:
    """One test's corner of the server: its schema, its application name, its queues."""

    def __init__(self, server: str) -> None:
        tag = uuid.uuid4().hex[:12]
        self.server = server
        self.schema = f"qc_test_{tag}"
        self.application = f"qc-test-{tag}"
        self.queues: list[PostgresQueue] = []

    def url(self, queue: str = "jobs", **options: Any) -> str:
        """A ``postgresql://`` URL of a queue in this test's schema (for from_url, the CLI
        and child processes)."""
        query = {"queue": queue, "schema": self.schema, "application_name": self.application}
        query.update({key: _text(value) for key, value in options.items()})
        return f"{self.server}?{urlencode(query)}"

    @property
    def conninfo(self) -> str:
        return f"{self.server}?{urlencode({'application_name': self.application})}"

    def queue(self, queue: str = "jobs", **kwargs: Any) -> PostgresQueue:
        """A queue in this schema, closed at the end of the test."""
        made = PostgresQueue(self.conninfo, queue, schema=self.schema, **kwargs)
        self.queues.append(made)
        return made

    def connect(self, **kwargs: Any) -> Any:
        """A plain psycopg connection (not the queue's), e.g. for the test's own checks."""
        return psycopg.connect(self.server, autocommit=True, **kwargs)

    def scalar(self, query: str, *params: Any) -> Any:
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]

    def backends(self, where: str = "true") -> list[int]:
        """Server pids of this test's connections (matching ``where`` on pg_stat_activity)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND pid <> pg_backend_pid() AND ({})".format(where.replace("%", "%%")),
                (self.application,),
            ).fetchall()
        return [row[0] for row in rows]

    def terminate(self, where: str = "true") -> int:
        """pg_terminate_backend every connection of this test matching ``where``."""
        pids = self.backends(where)
        with self.connect() as conn:
            for pid in pids:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(pids)

    def drop(self) -> None:
        for made in self.queues:
            made.close()
        with self.connect() as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.fixture
def pg() -> Iterator[Database]:
    """This test's schema on the local PostgreSQL (skipped locally without it, failed in CI)."""
    require_server("PostgreSQL", HOST, PORT)
    database = Database(SERVER)
    try:
        yield database
    finally:
        database.drop()


def put_bodies(queue: PostgresQueue) -> Callable[[list[str]], object]:
    return queue.put_many
