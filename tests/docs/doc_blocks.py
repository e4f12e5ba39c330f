"""Find the code blocks of the documentation: ``python`` blocks to run, shell lines to check.

A block may be preceded (on the line before its fence, blank lines allowed) by one HTML
comment that says how to run it:

- ``<!-- requires: sqs -->`` (or ``postgres``, ``redis``, ``rabbitmq``, ``nats``): it needs
  that server; the test provides it (SQS: moto) or skips locally / fails in CI without it.
- ``<!-- not-run: why -->``: it cannot run at all (a signature, a fragment of someone else's
  project); the test reports it as skipped, with the reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<key>requires|not-run)\s*:\s*(?P<value>.*?)\s*-->\s*$")
SERVERS = ("sqs", "postgres", "redis", "rabbitmq", "nats")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    requires: str | None = None
    not_run: str | None = None

    @property
    def id(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def doc_files() -> list[Path]:
    """Every Markdown page of the site (README.md is not one: callers add it)."""
    return sorted(p for p in DOCS.rglob("*.md") if not p.name.startswith("_"))


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        ticks, indent = match["ticks"], len(match["indent"])
        language = (match["info"].split() or [""])[0].lower()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(ticks):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        index += 1
        requires, not_run = _directive(lines, start, path)
        found.append(Block(path, start + 1, language, "\n".join(body) + "\n", requires, not_run))
    return found


def _directive(lines: list[str], fence: int, path: Path) -> tuple[str | None, str | None]:
    above = fence - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    match = _DIRECTIVE.match(lines[above]) if above >= 0 else None
    if match is None:
        return None, None
    if match["key"] == "not-run":
        return None, match["value"] or "no reason given"
    server = match["value"].lower()
    if server not in SERVERS:
        raise ValueError(f"{path}:{above + 1}: unknown server {server!r} (known: {SERVERS})")
    return server, None


def python_blocks(paths: list[Path]) -> list[Block]:
    return [b for path in paths for b in blocks(path) if b.language in ("python", "py")]


def cli_lines(paths: list[Path]) -> list[tuple[str, list[str]]]:
    """``(id, argv)`` of every ``queue-consumer ...`` line in the shell blocks."""
    found = []
    for path in paths:
        for block in blocks(path):
            if block.language not in ("bash", "sh", "shell", "console"):
                continue
            logical = block.code.replace("\\\n", " ").splitlines()
            for offset, line in enumerate(logical):
                text = line.strip().removeprefix("$ ")
                if text.startswith("queue-consumer "):
                    argv = shlex.split(text, comments=True)[1:]
                    found.append((f"{block.id}+{offset + 1}", argv))
    return found
