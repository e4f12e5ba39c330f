"""Every ```python block of the README runs as written.

Each block runs as a script in its own subprocess and temp dir, after a small prelude that
defines the "your work" functions the snippets call without defining (``process``,
``ship``, ...): they print what they were given. A block that ends by itself must exit 0.
A block that serves until stopped (``supervise(blocking=True)``) must print its work, then
stop cleanly on SIGTERM with exit 0. Either way, no traceback and no failed handler on
stderr, and a block that runs a consumer must have printed its work (handled something).
A block that truly cannot run here (it needs AWS) is marked on the line before it with
``<!-- not-run: reason -->``; those are skips, listed with their reason in the summary.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from queue_consumer.testing import wait_until

README = Path(__file__).resolve().parents[2] / "README.md"

#: How long a block may run by itself, and how long a serving one has to show its work.
DEADLINE = 60.0
#: A serving block is done once its output has been still this long.
QUIET = 1.0

PRELUDE = """\
def _fake(name):
    def work(*args, **kwargs):
        print(f"{name}{args or ''}{kwargs or ''}", flush=True)
    work.__name__ = name
    return work


process = ship = send_email = insert_all = bulk_insert = None
for _name in ("process", "ship", "send_email", "insert_all", "bulk_insert"):
    globals()[_name] = _fake(_name)


def inserted(message):
    return True


class DatabaseError(Exception):
    pass


# --- the README's block ---
"""


@dataclass(frozen=True)
class Block:
    line: int  #: where the block's code starts in README.md
    code: str
    skip: str | None  #: the reason given in a not-run comment


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```python":
            index += 1
            continue
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = re.fullmatch(r"\s*<!--\s*not-run:\s*(.+?)\s*-->\s*", previous)
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(index + 2, code, marker.group(1) if marker else None))
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())
RUNNABLE = [block for block in BLOCKS if block.skip is None]


def test_the_readme_has_examples_and_says_why_it_skips_any() -> None:
    assert len(RUNNABLE) >= 5, "the README's python blocks were not found"
    skipped = [block for block in BLOCKS if block.skip is not None]
    # Listed in the report (-rA / -v shows it): what is not run, and why.
    print(f"{len(RUNNABLE)} README blocks run, {len(skipped)} not run:")
    for block in skipped:
        print(f"  README.md:{block.line}: {block.skip}")
    assert all(block.skip for block in skipped)


def _serves(code: str) -> bool:
    return "supervise(blocking=True)" in code


def _runs_a_consumer(code: str) -> bool:
    """A block that consumes (rather than only defining a handler) must show its work."""
    return re.search(r"with Consumer\(|\.start\(\)|\.supervise\(", code) is not None


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.skip is not None:  # counted and listed as skipped in pytest's summary (-ra)
        pytest.skip(f"README.md:{block.line} not run: {block.skip}")
    script = tmp_path / "example.py"
    script.write_text(PRELUDE + block.code)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script)], cwd=tmp_path, stdout=stdout, stderr=stderr, text=True
        )
    try:
        if _serves(block.code):
            wait_until(lambda: out.stat().st_size > 0, timeout=DEADLINE, message="its work")
            _wait_quiet(out, process)
            assert process.poll() is None, f"stopped by itself:\n{err.read_text()}"
            process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr_text = err.read_text()
    assert returncode == 0, f"exit {returncode}:\n{stderr_text}"
    assert "Traceback" not in stderr_text, stderr_text
    assert "failed" not in stderr_text, stderr_text
    if _runs_a_consumer(block.code):
        assert out.read_text().strip(), f"it consumed nothing:\n{stderr_text}"


def _wait_quiet(out: Path, process: subprocess.Popen[str]) -> None:
    """Until the block's output has not grown for QUIET seconds (its work is done)."""
    state = {"size": -1, "since": time.monotonic()}

    def quiet() -> bool:
        size = out.stat().st_size
        now = time.monotonic()
        if size != state["size"]:
            state["size"], state["since"] = size, now
        return process.poll() is not None or now - state["since"] >= QUIET

    wait_until(quiet, timeout=DEADLINE, message="its output to settle")


def test_the_extractor_reads_markers_and_blocks() -> None:
    text = "\n".join(
        [
            "<!-- not-run: needs AWS -->",
            "```python",
            "print(1)",
            "```",
            "",
            "```python",
            "print(2)",
            "```",
            "```bash",
            "echo 3",
            "```",
        ]
    )
    first, second = readme_blocks(text)
    assert (first.line, first.code, first.skip) == (3, "print(1)\n", "needs AWS")
    assert (second.line, second.code, second.skip) == (7, "print(2)\n", None)
