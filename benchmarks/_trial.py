"""One trial in a fresh process: ``python -m benchmarks._trial SPEC_JSON`` prints one result line.

A fresh process per trial makes ``ru_maxrss`` the peak of this runner alone, and keeps
threads, caches and heap fragmentation of one runner out of the next one's numbers.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import traceback
from typing import Any

MARKER = "BENCHMARK-RESULT "


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[1])
    try:
        module = importlib.import_module(f"benchmarks.{spec['module']}")
        result: dict[str, Any] = module.trial(spec)
    except Exception:
        result = {"ok": False, "error": traceback.format_exc()}
    result["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["children_rss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
