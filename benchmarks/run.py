"""`make bench`: every benchmark once, as ratios against baselines measured in the same
run; the table is printed and written to benchmarks/results.md (about 6 minutes, most
of it the storm at the default 30 alerts per card draining at Feishu's 100/min).

    python -m benchmarks.run [--quick] [--output PATH]
    python -m benchmarks.run --only throughput   # one benchmark; the table is printed only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import bench_redis, latency, render, storm, throughput
from benchmarks.report import Row, document, table

RESULTS = Path(__file__).resolve().parent / "results.md"
ALONE: dict[str, Callable[[list[str]], list[Row]]] = {
    "render": render.run,
    "throughput": throughput.run,
    "latency": latency.run,
}


def _alone(bench: Callable[[list[str]], list[Row]]) -> int:
    notes: list[str] = []
    print(table(bench(notes)))
    print()
    for note in notes:
        print(f"- {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="skip the 4-minute default storm")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--only", choices=sorted(ALONE), help="run one benchmark, write nothing")
    args = p.parse_args(argv)
    if args.only:
        return _alone(ALONE[args.only])
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    notes: list[str] = []

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:5.0f}s] {name}", file=sys.stderr, flush=True)

    step("render")
    rows += render.run(notes)
    step("receiver throughput")
    rows += throughput.run(notes)
    step("latency")
    rows += latency.run(notes)
    step("storm, max_alerts_per_card 300")
    storm_rows, memory = storm.run(notes, per_card=300)
    rows += storm_rows
    if not args.quick:
        step("storm, default max_alerts_per_card (about 4 minutes)")
        storm_rows, memory = storm.run(notes)
        rows += storm_rows
    rows += [
        Row(
            "amfeishu RSS idle, after start (VmRSS)",
            f"{memory['idle_rss']:.0f} MB",
            f"≤ {storm.GOAL_IDLE_MB} MB",
            memory["idle_rss"] <= storm.GOAL_IDLE_MB,
        ),
        Row(
            "amfeishu peak RSS during the storm (VmHWM)",
            f"{memory['storm_hwm']:.0f} MB",
            f"≤ {storm.GOAL_STORM_MB} MB",
            memory["storm_hwm"] <= storm.GOAL_STORM_MB,
        ),
    ]
    step("Redis: one and two replicas against SQLite")
    for measure, value, note in bench_redis.run():
        rows.append(Row(measure, value, "", None))
        if note:
            notes.append(f"{measure}: {note}")
    seconds = time.monotonic() - started
    print(table(rows))
    print()
    for note in notes:
        print(f"- {note}")
    load = f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    args.output.write_text(document(rows, notes, seconds, load))
    step(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
