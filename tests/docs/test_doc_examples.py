"""Every ``python`` block of docs/**/*.md runs as written (README.md's are copies of them);
every ``queue-consumer`` line of their shell blocks parses.

Each block runs in its own Python process, in a fresh temp directory, with a deadline.
``doc_prelude`` is imported first: it defines the placeholders the docs use for the reader's
own code (``process``, ``ship``...) and ends a ``supervise(blocking=True)`` with SIGTERM.
Blocks that need a server say so (``<!-- requires: sqs -->``): SQS examples get a moto server
with the queues they name; the others skip locally and fail in CI without their server.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from doc_blocks import ROOT, Block, blocks, cli_lines, doc_files, python_blocks

HERE = Path(__file__).resolve().parent
DEADLINE = 60.0  # seconds per example
SIGTERM_AFTER = 0.5  # seconds after supervise(blocking=True) installed its signal handlers
SQS_QUEUES = ("orders", "orders-dlq", "orders.fifo")  # the queue names the SQS examples use
SERVER_PORTS = {"postgres": 5432, "redis": 6379, "rabbitmq": 5672, "nats": 4222}

# Not README.md: each of its examples must be a copy of one on a docs page
# (tests/docs/test_docs_site.py checks that), so running the pages runs the README too.
BLOCKS = python_blocks(doc_files())


def _require_server(name: str, port: int) -> None:
    spec = importlib.util.spec_from_file_location("_tests_conftest", ROOT / "tests/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.require_server(name, "127.0.0.1", port)


def run_block(block: Block, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    script = tmp_path / "example.py"
    # One line first, so the example's line N is the script's line N + 1.
    script.write_text("import doc_prelude  # noqa: F401\n" + block.code, encoding="utf-8")
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(HERE), environ.get("PYTHONPATH", "")])
    if "blocking=True" in block.code:
        environ["DOC_EXAMPLE_SIGTERM"] = str(SIGTERM_AFTER)
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.id}: still running after {DEADLINE} s\n{exc.stderr or ''}")
    if result.returncode != 0:
        pytest.fail(
            f"{block.id}: exit {result.returncode} (line N of the block is line N + 1 of "
            f"example.py)\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n"
            f"{result.stderr[-5000:]}"
        )


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if block.not_run is not None:
        pytest.skip(f"not-run: {block.not_run}")
    env: dict[str, str] = {}
    if block.requires == "sqs":
        env = request.getfixturevalue("doc_sqs_env")
    elif block.requires is not None:
        _require_server(block.requires, SERVER_PORTS[block.requires])
    run_block(block, tmp_path, env)


CLI_LINES = cli_lines([*doc_files(), ROOT / "README.md"])


@pytest.mark.parametrize("argv", [argv for _, argv in CLI_LINES], ids=[i for i, _ in CLI_LINES])
def test_cli_line_parses(argv: list[str]) -> None:
    from queue_consumer.cli._options import UsageError, build_parser

    try:
        build_parser().parse_args(argv)
    except UsageError as exc:
        pytest.fail(f"queue-consumer {' '.join(argv)}: {exc}")


def test_examples_were_found() -> None:
    assert len(BLOCKS) >= 20, [b.id for b in BLOCKS]
    assert CLI_LINES, "no queue-consumer line found in the docs"


@pytest.fixture(scope="session")
def doc_sqs_env(moto_endpoint: str) -> dict[str, Any]:
    """The environment of an SQS example: boto3 pointed at moto, the example's queues made."""
    import boto3
    from sqs_server import aws_environment

    env = aws_environment(moto_endpoint)
    client = boto3.client(
        "sqs",
        endpoint_url=moto_endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    urls = []
    for name in SQS_QUEUES:
        attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        urls.append(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    return {**env, "DOC_EXAMPLE_POKE": " ".join(urls[:1])}


def _dockerfile_settings() -> list[tuple[str, dict[str, str]]]:
    found = []
    for path in doc_files():
        for block in blocks(path):
            if block.language == "dockerfile":
                pairs = re.findall(r'(QUEUE_CONSUMER_[A-Z_]+)=("[^"]*"|\S+)', block.code)
                found.append((block.id, {name: value.strip('"') for name, value in pairs}))
    return found


DOCKERFILES = _dockerfile_settings()


@pytest.mark.parametrize("settings", [s for _, s in DOCKERFILES], ids=[i for i, _ in DOCKERFILES])
def test_dockerfile_settings_are_real_options(settings: dict[str, str]) -> None:
    from queue_consumer.cli._options import ENV_PREFIX, apply_env, build_parser

    assert settings, "a Dockerfile in the docs sets no QUEUE_CONSUMER_* variable"
    args = build_parser().parse_args(["run"])
    known = {ENV_PREFIX + option.dest.upper() for option in args._env_options}
    assert set(settings) <= known, f"unknown settings {sorted(set(settings) - known)}"
    apply_env(args, settings)  # raises UsageError for a value the option refuses
