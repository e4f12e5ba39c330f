"""The examples in the observability docstrings run; importing the package needs no extra."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "queue_consumer.observability._common",
        "queue_consumer.observability.otel",
        "queue_consumer.observability.server",
        "queue_consumer.observability.statsd",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), raise_on_error=False)
    assert result.failed == 0
    assert result.attempted > 0


def test_the_package_and_its_stdlib_parts_import_without_extras() -> None:
    code = (
        "import sys\n"
        "for name in ('prometheus_client', 'opentelemetry'):\n"
        "    sys.modules[name] = None\n"
        "import queue_consumer.observability\n"
        "import queue_consumer.observability.health, queue_consumer.observability.server\n"
        "import queue_consumer.observability.statsd, queue_consumer.observability.logs\n"
        "from queue_consumer.observability.propagation import inject_trace_context\n"
        "assert inject_trace_context({'a': 1}) == {'a': 1}\n"
        "try:\n"
        "    import queue_consumer.observability.otel\n"
        "except ModuleNotFoundError as exc:\n"
        "    assert 'pip install queue-consumer[otel]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('otel imported without opentelemetry')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
