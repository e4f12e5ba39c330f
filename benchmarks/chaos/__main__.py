"""``python -m benchmarks.chaos [--queues ...] [--faults ...] [--quick] [--scale] [--out FILE]``

Exits 1 if any scenario lost a message.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import shlex
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from ._queues import KINDS, Backend
from ._scenario import FAULTS, ROOT, Result, run, started

#: The short version: a few scenarios per queue (CI runs it through tests/chaos).
QUICK = {
    "sqlite": ("kill-consumer", "rolling-deploy", "handler-raise", "kill-child"),
    "sqs": ("kill-consumer", "flaky-broker"),
    "postgres": ("kill-consumer", "cut-connections"),
    "redis": ("kill-consumer", "cut-connections"),
    "rabbitmq": ("kill-consumer", "cut-connections"),
    "nats": ("kill-consumer", "broker-restart"),
}


def _cell(result: Result) -> list[str]:
    if result.skipped:
        return [result.queue, result.fault, f"skipped: {result.skipped}", "", "", "", "", "", ""]
    causes = "; ".join(f"{n} {c}" for c, n in sorted(result.causes.items())) or ""
    dups = f"{result.duplicates}" + (f" ({causes})" if causes else "")
    recover = "" if result.recover is None else f"{result.recover:.1f} s"
    return [
        result.queue,
        result.fault,
        str(result.sent),
        str(result.handled),
        f"{result.dead} ({result.poison} by design)",
        f"**{result.lost}**" if result.lost else "0",
        dups,
        recover,
        f"{result.seconds:.1f} s; " + "; ".join(result.notes),
    ]


HEADER = [
    "queue",
    "fault",
    "sent",
    "handled",
    "dead-lettered",
    "lost",
    "duplicates (cause)",
    "time to recover",
    "run time; notes",
]


def table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for result in results:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _cell(result)) + " |")
    return "\n".join(lines)


def scale_table(rows: list[tuple[str, dict[int, float], str]]) -> str:
    lines = [
        "| queue | 1 process msg/s | 2 processes | 4 processes | where the limit is |",
        "|---|---|---|---|---|",
    ]
    for queue, rates, limit in rows:
        if not rates:
            lines.append(f"| {queue} | {limit} | | | |")
            continue
        base = rates.get(1) or 0.0
        cells = [f"{rates[1]:.0f}"] + [
            f"{rates[n]:.0f} (x{rates[n] / base:.2f})" if base else f"{rates[n]:.0f}"
            for n in (2, 4)
        ]
        lines.append(f"| {queue} | {' | '.join(cells)} | {limit} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--queues", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), choices=list(FAULTS))
    parser.add_argument("--quick", action="store_true", help="the short version (CI)")
    parser.add_argument("--messages", type=int, default=None, help="M per scenario")
    parser.add_argument("--consumers", type=int, default=None, help="N consumer processes")
    parser.add_argument("--limit", type=float, default=None, help="seconds per scenario")
    parser.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure 1/2/4 consumer processes (default: not with --quick)",
    )
    parser.add_argument(
        "--out", default=None, help="Markdown file (default docs/RELIABILITY.md; '-' for none)"
    )
    parser.add_argument("--workdir", default=None, help="keep logs and records here")
    args = parser.parse_args(argv)
    messages = args.messages or (200 if args.quick else 400)
    consumers = args.consumers or (2 if args.quick else 3)
    limit = args.limit or (60.0 if args.quick else 120.0)
    scale = (not args.quick) if args.scale is None else args.scale
    command = "python -m benchmarks.chaos " + shlex.join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out) if args.out else ROOT / "docs" / "RELIABILITY.md"

    # The harness's own queue objects (fill, stats, dead letters) log reconnects: quiet.
    logging.getLogger("queue_consumer").setLevel(logging.ERROR)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results: list[Result] = []
    scaled: list[tuple[str, dict[int, float], str]] = []
    began = time.monotonic()
    workdir = contextlib.nullcontext(args.workdir) if args.workdir else None
    with workdir or tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        os.chmod(tmp, 0o755)
        for name in args.queues:
            kind = KINDS[name]
            faults = [f for f in args.faults if not args.quick or f in QUICK[name]]
            reason = kind.unavailable()
            if reason is None:
                try:
                    directory = Path(tmp) / name
                    directory.mkdir()
                    backend: Backend = kind(directory)
                    with started(backend):
                        for fault in faults:
                            log(f"  .. {name} x {fault}")
                            result = run(
                                backend,
                                FAULTS[fault],
                                directory / fault,
                                messages=messages,
                                consumers=consumers,
                                limit=limit,
                                log=log,
                            )
                            log(f"     {_cell(result)}")
                            results.append(result)
                        if scale:
                            scaled.append(_scale(backend, directory, messages, log))
                    continue
                except Exception as exc:  # a server that would not start: say so, go on
                    reason = f"{type(exc).__name__}: {exc}"[:200]
            log(f"  .. {name}: skipped: {reason}")
            results += [Result(name, f, skipped=reason) for f in faults]
            if scale:
                scaled.append((name, {}, f"skipped: {reason}"))
    text = report(results, scaled, command, time.monotonic() - began)
    print(text)
    if str(out) != "-":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 1 if any(r.lost for r in results) else 0


LIMITS = {
    "sqlite": "the file's write lock (one writer at a time; every get and settle is a write)",
    "sqs": "moto's server (one Python process, scans the queue per request); real SQS scales",
    "postgres": "the consumers (SKIP LOCKED gets do not block each other)",
    "redis": "the consumers (XREADGROUP/XACK are microseconds on the server)",
    "rabbitmq": "the consumers (prefetch keeps deliveries flowing)",
    "nats": "the consumers (pull fetches per worker)",
}


def _scale(
    backend: Backend, directory: Path, messages: int, log: object
) -> tuple[str, dict[int, float], str]:
    """Throughput of 1, 2, 4 consumer processes with a 20 ms I/O-bound handler."""
    from ._scenario import FAULTS as faults

    rates: dict[int, float] = {}
    for count in (1, 2, 4):
        result = run(
            backend,
            faults["none"],
            directory / f"scale-{count}",
            messages=messages,
            consumers=count,
            limit=120,
            sleep=0.02,
            workers=1,
            handlers=4,
            log=log,
        )  # type: ignore[arg-type]
        rates[count] = result.throughput
        if result.lost:
            return backend.name, {}, f"lost {result.lost} in the scale run"
    return backend.name, rates, LIMITS.get(backend.name, "")


def report(
    results: list[Result],
    scaled: list[tuple[str, dict[int, float], str]],
    command: str,
    seconds: float,
) -> str:
    ran = [r for r in results if not r.skipped]
    lines = [
        "# Reliability under faults",
        "",
        *textwrap.wrap(
            "Every row: a fresh queue, M messages with unique ids, N consumer processes of "
            "`python -m queue_consumer run benchmarks.chaos._handler:handle` (2 workers, "
            "2 handlers, bulk 1, a 0.1 s handler, 3 s leases, 3 attempts), the fault on a "
            "schedule (at shares of the messages handled), then one check: every message "
            "handled at least once or dead-lettered by design. **lost** counts messages "
            "that were neither. A duplicate is a second successful handling; its cause is "
            "the fault around its first handling (a consumer killed between handling and "
            "settling, a settle lost with a connection). Time to recover: from the end of "
            "the fault to the next successful handling (by the cut-off host's consumer for "
            "host-partition; the worst of the fault's repetitions).",
            88,
        ),
        "",
        f"- command: `{command}` ({seconds:.0f} s)",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}",
        f"- scenarios run: {len(ran)}; lost in total: {sum(r.lost for r in ran)}; "
        f"duplicates in total: {sum(r.duplicates for r in ran)}",
        "",
        table(results),
        "",
        *textwrap.wrap(
            "Where duplicates come from: a consumer (or handler child) killed after its "
            "handler succeeded and before the batched settle went out; a settle (ack, "
            "delete, XACK) that failed while the broker restarted, the link was down or "
            "the proxy dropped the answer: the adapters do not retry a settle across an "
            "outage, so the message comes back after its lease (at-least-once, by design); "
            "moto's server, which can lose one of two concurrent deletes. A stuck-handler "
            "exit (stuck-threads) used to release the messages of healthy handlers still "
            "running, so another consumer handled them at the same time: fixed in the core "
            "(they now get min(shutdown_timeout, handler_timeout) to finish).",
            88,
        ),
        "",
        *textwrap.wrap(
            "Skipped rows say why. handler-memory sets RLIMIT_AS in the child (the "
            "--initializer), so the allocation raises MemoryError; a kernel OOM kill is a "
            "SIGKILL of the child, which kill-child covers. RabbitMQ's in_flight is None "
            "(AMQP cannot tell).",
            88,
        ),
        "",
    ]
    if scaled:
        lines += [
            "## Scale-out: 1, 2 and 4 consumer processes on one queue",
            "",
            "A 20 ms `time.sleep` handler (I/O-bound), 1 worker and 4 handler threads per",
            "process, bulk 1: one process tops out near 4 / 0.02 s = 200 msg/s, so the ideal",
            "ratios are x2 and x4. Msg/s from the first to the last handling.",
            "",
            scale_table(scaled),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
