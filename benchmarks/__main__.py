"""Run the benchmarks: ``python -m benchmarks [W1 W2 ...] [--quick] [--runs N]``.

Prints one Markdown table per workload, then the targets. Exits 1 if any run lost a
message (or failed otherwise); a missed performance target is reported, not fatal,
unless ``--strict``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import sys
import time
from typing import Any

from ._harness import evaluate, execute, table

WORKLOADS = {
    "W1": "w1_overhead",
    "W2": "w2_io",
    "W3": "w3_sqs_noop",
    "W4": "w4_sqs_slow",
    "W5": "w5_cpu",
    "W6": "w6_memory",
    "W7": "w7_sqlite",
    "REDIS": "w_redis",
    "OBS": "w_observability",
    "RABBIT": "w_rabbitmq",
    "PG": "w_postgres",
    "NATS": "w_nats",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("workloads", nargs="*", metavar="W", help="W1..W6 (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller N, for a smoke run")
    parser.add_argument("--runs", type=int, default=None, help="runs per row (default 3)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    names = [w.upper() for w in args.workloads] or list(WORKLOADS)
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )

    def progress(text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    print(f"# queue_consumer benchmarks{' (--quick)' if args.quick else ''}\n")
    print(f"- machine: {os.cpu_count()} CPUs (nproc), {platform.platform()}")
    print(f"- Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"- command: python -m benchmarks {' '.join(argv or sys.argv[1:])}".rstrip())
    print(f"- load average at start: {_load()}")
    failed = False
    verdicts = []
    started = time.monotonic()
    for name in names:
        module: Any = importlib.import_module(f"benchmarks.{WORKLOADS[name]}")
        plan = module.plan(args.quick)
        if args.runs:
            plan.runs = args.runs
        environment = getattr(module, "environment", None)
        with environment() if environment else contextlib.nullcontext({}) as env:
            aggregates = execute(plan, env, progress)
        print("\n" + table(plan, aggregates), flush=True)
        for aggregate in aggregates.values():
            for failure in aggregate.failures:
                failed = True
                print(f"\n**FAILED** {aggregate.row.key}: {failure}")
        verdicts.extend(evaluate(plan, aggregates))
    if verdicts:
        print("\n### Targets\n")
        print("| target | goal | measured | met |\n|---|---|---|---|")
        for label, goal, measured, ok in verdicts:
            print(f"| {label} | {goal} | {measured} | {'yes' if ok else '**no**'} |")
    print(f"\n(total {time.monotonic() - started:.0f} s; load average at the end: {_load()})")
    if failed:
        print("\nSOME RUNS FAILED (lost or unsettled messages): see above", file=sys.stderr)
        return 1
    if args.strict and not all(ok for *_, ok in verdicts):
        return 1
    return 0


def _load() -> str:
    """The 1/5/15-minute load averages: a shared machine's other work shows here."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
