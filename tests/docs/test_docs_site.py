"""The site itself: the CLI reference is generated from the parser and is up to date, and the
example-finding rules of tests/docs/doc_blocks.py do what the docs say."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from doc_blocks import ROOT, Block, blocks, python_blocks
from test_doc_examples import run_block


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_gen_cli", ROOT / "docs" / "_gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "_gen_cli.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_cli_reference_lists_every_option() -> None:
    from queue_consumer.cli._options import build_parser

    page = _generator().render()
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    for name, sub in subparsers.choices.items():
        assert f"## `{name}`" in page
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, f"{name} {flag} missing from the CLI reference"


def _page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_blocks_and_their_directives(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        """\
        # Page

        ```python
        print("plain")
        ```

        <!-- requires: sqs -->
        ```python
        print("needs sqs")
        ```

        <!-- not-run: a fragment -->

        ```python
        fragment(
        ```

        ```bash
        queue-consumer stats URL
        ```
        """,
    )
    found = python_blocks([page])
    assert [(b.line, b.requires, b.not_run) for b in found] == [
        (3, None, None),
        (8, "sqs", None),
        (14, None, "a fragment"),
    ]
    assert [b.language for b in blocks(page)][-1] == "bash"


def test_an_unknown_server_is_an_error(tmp_path: Path) -> None:
    page = _page(tmp_path, "<!-- requires: oracle -->\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="oracle"):
        python_blocks([page])


def test_a_failing_example_fails(tmp_path: Path) -> None:
    block = Block(tmp_path / "page.md", 1, "python", "process(1)\nraise SystemExit(3)\n")
    with pytest.raises(pytest.fail.Exception, match="exit 3"):
        run_block(block, tmp_path)


README = ROOT / "README.md"
README_LIMIT = 12_000  # characters: the README points into the docs, it does not repeat them


def test_readme_is_short() -> None:
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters; move sections into docs/"


def test_readme_examples_are_in_the_docs() -> None:
    """Nothing is only in the README: each of its code examples is on a docs page too."""
    pages = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "docs").rglob("*.md"))
    for block in python_blocks([README]):
        assert block.code in pages, f"{block.id}: only in the README; put it on a docs page"


def test_readme_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into docs/"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
