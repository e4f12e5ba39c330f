"""postgresql:// URLs: every option, libpq's passed through, passwords never shown."""

from __future__ import annotations

import importlib
import logging
import socket
import sys

import pytest
from postgres_helpers import SERVER, Database, pg

from queue_consumer import open_queue
from queue_consumer.adapters.postgres import PostgresQueue, PostgresQueueError, from_url
from queue_consumer.errors import ConfigurationError

__all__ = ["pg"]

SECRET = "s3cret-Pa55"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_every_option_of_the_url() -> None:
    queue = from_url(
        "postgresql://app@db.internal:6432/shop?queue=orders&schema=queues"
        "&visibility_timeout=45&max_messages=25&max_attempts=7&retry_delay=0.5"
        "&max_retry_delay=60&wait_time=2&poll_interval=0.25&listen=false&declare=off"
        "&heartbeat=0&pool_size=12&pool_timeout=3&prepare=no&sslmode=prefer&connect_timeout=4"
    )
    assert queue.settings() == {
        "conninfo": "postgresql://app@db.internal:6432/shop?sslmode=prefer&connect_timeout=4",
        "queue": "orders",
        "schema": "queues",
        "visibility_timeout": 45.0,
        "max_messages": 25,
        "max_attempts": 7,
        "retry_delay": 0.5,
        "max_retry_delay": 60.0,
        "wait_time": 2.0,
        "poll_interval": 0.25,
        "listen": False,
        "declare": False,
        "heartbeat": False,
        "pool_size": 12,
        "pool_timeout": 3.0,
        "prepare": False,
    }
    queue.close()  # it never connected: everything happens on first use


def test_both_schemes_open_a_postgres_queue() -> None:
    for scheme in ("postgresql", "postgres"):
        queue = open_queue(f"{scheme}://u@h/db?queue=q")
        assert isinstance(queue, PostgresQueue) and queue.queue == "q"
        assert queue.settings()["conninfo"] == f"{scheme}://u@h/db"
        queue.close()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("queue=q&colour=blue", "unknown option 'colour'"),
        ("visibility_timeout=0", "visibility_timeout must be a number of seconds > 0"),
        ("max_messages=5000", "max_messages must be an integer from 1 to 1000"),
        ("listen=maybe", "listen must be true or false"),
        ("wait_time=60", "wait_time must be a number of seconds >= 0 and <= 20"),
        ("queue=a&queue=b", "option 'queue' is given twice"),
        ("retry_delay=10&max_retry_delay=1", "max_retry_delay"),
    ],
)
def test_bad_urls_are_errors_naming_the_option_without_the_password(query: str, error: str) -> None:
    with pytest.raises(ConfigurationError, match=error) as caught:
        from_url(f"postgresql://app:{SECRET}@db/shop?{query}")
    assert SECRET not in str(caught.value)


def test_not_a_postgres_url() -> None:
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL") as caught:
        from_url(f"mysql://app:{SECRET}@db/shop")
    assert SECRET not in str(caught.value)


def test_a_password_never_shows(pg: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # The local server trusts, so the password is sent and ignored: the queue works.
    url = pg.url().replace("postgres@", f"postgres:{SECRET}@")
    queue = from_url(url)
    pg.queues.append(queue)
    queue.put("x")
    assert SECRET not in repr(queue) and "postgres:***@" in repr(queue)
    assert SECRET not in str(queue.stats()) and SECRET not in str(queue.statistics())
    # An unreachable server: the error and every log line name the host, never the password.
    down = PostgresQueue(
        f"postgresql://app:{SECRET}@127.0.0.1:{closed_port()}/db", pool_timeout=1.0
    )
    with pytest.raises(PostgresQueueError, match=r"app:\*\*\*@127\.0\.0\.1") as caught:
        down.stats()
    down.close()
    assert SECRET not in str(caught.value)
    keywords = PostgresQueue(f"host=127.0.0.1 port=1 password={SECRET} dbname=x")
    assert SECRET not in repr(keywords) and "password=***" in repr(keywords)
    keywords.close()
    assert caplog.records, "expected the pool's connection failures to be logged"
    for record in caplog.records:
        assert SECRET not in record.getMessage()


def test_libpq_options_reach_the_server(pg: Database) -> None:
    queue = from_url(pg.url())  # application_name=qc-test-... is libpq's, passed through
    pg.queues.append(queue)
    queue.stats()
    assert pg.backends()
    assert SERVER in queue.settings()["conninfo"]


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.startswith("queue_consumer.adapters.postgres"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what a missing package looks like
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'queue-consumer\[postgres\]'"):
        importlib.import_module("queue_consumer.adapters.postgres")
    with pytest.raises(ConfigurationError, match=r"install queue-consumer\[postgres\]"):
        open_queue("postgresql://u@h/db")
