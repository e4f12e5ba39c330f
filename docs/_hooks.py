"""MkDocs hooks: the build fails while the generated CLI reference is stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError


def _generator() -> Any:
    path = Path(__file__).resolve().parent / "_gen_cli.py"
    spec = importlib.util.spec_from_file_location("_gen_cli", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_pre_build(config: Any) -> None:
    if _generator().is_stale():
        raise PluginError("docs/reference/cli.md is stale: run `make docs-cli`")
