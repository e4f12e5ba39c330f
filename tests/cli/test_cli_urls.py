"""The URL registry: built-in schemes, register_scheme, entry points, helpful errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from queue_consumer import MemoryQueue, _urls
from queue_consumer._urls import known_schemes, open_queue, register_scheme
from queue_consumer.adapters import memory
from queue_consumer.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_urls, "_registered", {})
    monkeypatch.setattr(memory, "_by_name", {})


def test_memory_queue_is_one_per_name_with_options() -> None:
    queue = open_queue("memory://jobs?visibility_timeout=5&max_messages=3")
    assert isinstance(queue, MemoryQueue)
    assert (queue.visibility_timeout, queue.max_messages) == (5.0, 3)
    assert open_queue("memory://jobs") is queue
    assert open_queue("memory://other") is not queue


def test_memory_queue_rejects_unknown_and_bad_options() -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'colour' in 'memory://jobs"):
        open_queue("memory://jobs?colour=red")
    with pytest.raises(ConfigurationError, match="max_messages must be an integer"):
        open_queue("memory://jobs?max_messages=many")


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        open_queue("kafka://broker/topic")
    message = str(info.value)
    assert "unknown queue URL scheme 'kafka'" in message
    for scheme in ("memory", "sqlite", "sqs"):
        assert scheme in message


def test_a_string_without_scheme_is_not_a_url() -> None:
    with pytest.raises(ConfigurationError, match=r"not a queue URL: 'jobs\.db'"):
        open_queue("jobs.db")


def test_register_scheme_with_a_callable_and_a_string() -> None:
    seen: list[str] = []

    def factory(url: str) -> Any:
        seen.append(url)
        return "a queue"

    register_scheme("Fake", factory)
    assert open_queue("fake://host/q") == "a queue"
    assert seen == ["fake://host/q"]
    assert "fake" in known_schemes()

    register_scheme("json", "json:loads")  # "module:function", imported on first use
    with pytest.raises(ValueError):  # json.loads("json://x") is called: proves the lookup
        open_queue("json://x")


def test_http_urls_are_claimed_by_the_sqs_adapter_which_refuses_others() -> None:
    """The registry knows no broker: http(s) URLs go to the SQS adapter, which says no."""
    from queue_consumer.adapters.sqs import from_url

    assert _urls._resolve("https") is from_url
    assert _urls._resolve("http") is from_url
    with pytest.raises(ConfigurationError, match="expected an SQS queue URL"):
        open_queue("https://example.com/jobs")


def test_entry_point_plugs_in_a_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_plugin.py").write_text("def from_url(url):\n    return ('plugin', url)\n")
    dist = tmp_path / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[queue_consumer.queues]\nredis = my_plugin:from_url\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "redis" in known_schemes()
    assert open_queue("redis://localhost/0") == ("plugin", "redis://localhost/0")


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import boto3` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.setitem(sys.modules, "botocore", None)
    for name in [
        m
        for m in sys.modules
        if m.startswith(("queue_consumer.adapters.sqs", "queue_consumer.adapters.sqs."))
    ]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigurationError, match=r"install queue-consumer\[sqs\]"):
        open_queue("sqs://localhost:9324/queue/jobs")


def test_a_missing_factory_module_is_a_configuration_error() -> None:
    register_scheme("nope", "no_such_module_anywhere:from_url")
    with pytest.raises(ConfigurationError, match="cannot load the nope:// queue adapter"):
        open_queue("nope://x")


def test_invalid_scheme_names_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        register_scheme("", "x:y")
    with pytest.raises(ConfigurationError):
        register_scheme("a b", "x:y")
