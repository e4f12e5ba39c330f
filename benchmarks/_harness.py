"""Plans, subprocess trials, aggregation and the Markdown tables."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._trial import MARKER

ROOT = Path(__file__).resolve().parent.parent
TRIAL_TIMEOUT = 900


@dataclass
class Row:
    """One line of a workload's table: a runner in one configuration."""

    key: str
    runner: str
    config: str
    n: int
    spec: dict[str, Any] | None  #: None: a computed reference (``rate`` is given)
    rate: float | None = None


@dataclass
class Target:
    label: str
    row: str
    reference: str
    minimum: float  #: least ratio row / reference; ``kind="rss_growth"``: most MiB of growth
    kind: str = "ratio"


@dataclass
class Plan:
    name: str
    title: str
    rows: list[Row]
    references: list[str]  #: row keys; one ratio column per reference
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 3


@dataclass
class Aggregate:
    row: Row
    rates: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        if self.row.rate is not None:
            return self.row.rate
        return statistics.median(self.rates) if self.rates else 0.0

    @property
    def rss_mib(self) -> float:
        return statistics.median(self.rss) / 1024 if self.rss else 0.0


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._trial", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TRIAL_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    return {"ok": False, "error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}


def execute(
    plan: Plan, env: dict[str, Any], progress: Callable[[str], None]
) -> dict[str, Aggregate]:
    """Run every row ``plan.runs`` times, interleaved: run 1 of each row, then run 2..."""
    aggregates = {row.key: Aggregate(row) for row in plan.rows}
    for attempt in range(plan.runs):
        for row in plan.rows:
            if row.spec is None:
                continue
            result = run_trial({**row.spec, **env, "n": row.n})
            aggregate = aggregates[row.key]
            aggregate.results.append(result)
            if result.get("ok"):
                rate = row.n / result["seconds"]
                aggregate.rates.append(rate)
                aggregate.rss.append(result["rss_kib"])
                progress(f"{plan.name} run {attempt + 1}: {row.key}: {rate:,.0f} msg/s")
            else:
                aggregate.failures.append(str(result.get("error")))
                progress(f"{plan.name} run {attempt + 1}: {row.key}: FAILED\n{result.get('error')}")
    return aggregates


def table(plan: Plan, aggregates: dict[str, Aggregate]) -> str:
    refs = plan.references
    header = ["runner", "configuration", "N", "messages/s (median, min-max)"]
    header += [f"vs {aggregates[r].row.runner}" for r in refs]
    header += ["peak RSS", "notes"]
    lines = [f"### {plan.title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for aggregate in aggregates.values():
        row = aggregate.row
        if row.spec is None:
            rate = f"{row.rate:,.0f} (computed)"
        elif aggregate.failures:
            rate = f"FAILED ({len(aggregate.failures)} of {len(aggregate.results)} runs)"
        else:
            low, high = min(aggregate.rates), max(aggregate.rates)
            rate = f"{aggregate.median:,.0f} ({low:,.0f}-{high:,.0f})"
        ratios = []
        for ref in refs:
            base = aggregates[ref].median
            ratios.append(f"{aggregate.median / base:.2f}x" if base and aggregate.median else "-")
        rss = f"{aggregate.rss_mib:.1f} MiB" if aggregate.rss else "-"
        cells = [row.runner, row.config, f"{row.n:,}" if row.spec else "-", rate, *ratios, rss]
        cells.append(notes(aggregate))
        lines.append("| " + " | ".join(cells) + " |")
    lines.extend(f"\n{note}" for note in plan.notes)
    return "\n".join(lines)


def notes(aggregate: Aggregate) -> str:
    """Per-row extras the trials reported (medians over runs), e.g. moto's CPU use."""
    ok = [r for r in aggregate.results if r.get("ok")]
    keys: list[str] = []
    for result in ok:
        keys.extend(k for k in result.get("notes", {}) if k not in keys)
    parts = []
    for key in keys:
        values = [r["notes"][key] for r in ok if key in r.get("notes", {})]
        if all(isinstance(v, (int, float)) for v in values):
            value = statistics.median(values)
            parts.append(
                f"{key} {value:.0f}" if float(value).is_integer() else f"{key} {value:.2f}"
            )
        else:
            parts.append(f"{key} {values[0]}")
    if aggregate.rss and any(r.get("children_rss_kib") for r in ok):
        child = statistics.median(r["children_rss_kib"] for r in ok) / 1024
        parts.append(f"child RSS {child:.1f} MiB")
    return ", ".join(parts) or ""


def evaluate(plan: Plan, aggregates: dict[str, Aggregate]) -> list[tuple[str, str, str, bool]]:
    """(target, goal, measured, met) for each target of the plan."""
    verdicts = []
    for target in plan.targets:
        row, ref = aggregates[target.row], aggregates[target.reference]
        if target.kind == "rss_growth":
            growth = row.rss_mib - ref.rss_mib
            ok = bool(row.rss and ref.rss) and growth < target.minimum
            verdicts.append((target.label, f"< {target.minimum:.0f} MiB", f"{growth:+.1f} MiB", ok))
            continue
        ratio = row.median / ref.median if ref.median and row.median else 0.0
        ok = ratio >= target.minimum and not row.failures
        verdicts.append((target.label, f">= {target.minimum:.2f}x", f"{ratio:.2f}x", ok))
    return verdicts
