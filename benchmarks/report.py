"""Rows of the results table, printed as markdown and written to benchmarks/results.md."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Row:
    measure: str
    result: str
    goal: str = ""
    met: bool | None = None  # None: no goal, shown for context


def table(rows: list[Row]) -> str:
    lines = ["| Measure | Result | Goal | Met |", "| --- | --- | --- | --- |"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.measure} | {r.result} | {r.goal} | {met} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu or platform.machine()}), Linux {platform.release()}, "
        f"Python {sys.version.split()[0]}"
    )


def document(rows: list[Row], notes: list[str], seconds: float, load: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "# amfeishu benchmarks",
        "",
        f"Measured {when} by `make bench` in {seconds / 60:.1f} min on {machine()};",
        f"load average (1 min) {load}. Ratios compare runs on the same machine in the same",
        "run; absolute numbers vary with the machine and its neighbours.",
        "",
        table(rows),
        "",
    ]
    if notes:
        body += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(body)
