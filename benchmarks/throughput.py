"""Receiver throughput and memory: `POST /alerts/{target}` (5 alerts, durable SQLite
enqueue) against a bare Starlette endpoint that only parses the JSON, same uvicorn
settings, same load generator, alternating rounds. Twice: with a fast Feishu-like server
delivering, and with Feishu unreachable (the webhook points at a closed port on
127.0.0.1, so every delivery fails at once and backs off while the receiver keeps
accepting). Then the memory one notification costs while it waits in a worker."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.report import Row
from tests.support.processes import Amfeishu, free_port, wait_until

REQUESTS = 5000
WARMUP = 1000
ROUNDS = 5
CONCURRENCY = 16
GOAL = 0.6
GOAL_PEAK_MB = 100
WAITING = 4000  # notifications posted for the memory-per-waiting-notification row
GOAL_WAITING_KB = 5.0
LIMITS = {"per_second": 100_000, "per_minute": 6_000_000}


def _target(webhook: str) -> dict[str, Any]:
    return {"bench": {"webhook": webhook, "language": "en", "rate_limit": LIMITS}}


def _unreachable() -> str:
    """A webhook on a closed local port: connection refused at once."""
    return f"http://127.0.0.1:{free_port()}/open-apis/bot/v2/hook/bench"


def _alternate(server: Amfeishu, bare: str, tag: str) -> dict[str, list[float]]:
    """Warm both up, then ROUNDS alternating rounds: req/s of each."""
    urls = {"amfeishu": f"{server.url}/alerts/bench", "bare": f"{bare}/alerts/bench"}
    for name, url in urls.items():
        procs.load(url, WARMUP, f"{tag}-warm-{name}", CONCURRENCY)
    rates: dict[str, list[float]] = {"amfeishu": [], "bare": []}
    for i in range(ROUNDS):
        for name, url in urls.items():
            result = procs.load(url, REQUESTS, f"{tag}-r{i}-{name}", CONCURRENCY)
            rates[name].append(result["rps"])
    return rates


def _ratio_rows(label: str, rates: dict[str, list[float]], goal: bool = True) -> list[Row]:
    """`goal`: the issue's goal is for the receiver alone (Feishu unreachable); while
    delivering, the same loop also renders and sends, so that ratio is shown as it is."""
    ours, base = statistics.median(rates["amfeishu"]), statistics.median(rates["bare"])
    # Each round's two runs are back to back: their ratio cancels the machine's drift
    # between rounds, which a ratio of medians over all rounds does not.
    ratio = statistics.median(a / b for a, b in zip(rates["amfeishu"], rates["bare"], strict=True))
    return [
        Row(f"Receiver: POST /alerts/{{target}}, 5 alerts, SQLite, {label}", f"{ours:,.0f} req/s"),
        Row(f"Baseline ({label} run): bare Starlette parsing the JSON", f"{base:,.0f} req/s"),
        Row(f"Receiver / baseline, {label}", f"{ratio:.2f}", f"≥ {GOAL}", ratio >= GOAL)
        if goal
        else Row(f"Receiver / baseline, {label} (the loop also renders and sends)", f"{ratio:.2f}"),
    ]


def delivering(directory: Path, notes: list[str]) -> list[Row]:
    with procs.fast_fake("bench") as fake:
        config = procs.write_config(directory, _target(f"{fake}/open-apis/bot/v2/hook/bench"))
        with procs.amfeishu(config, directory) as server, procs.bare() as bare:
            rates = _alternate(server, bare, "d")
            sent = (WARMUP + ROUNDS * REQUESTS) * 5
            wait_until(
                lambda: server.metric("amfeishu_outbox_depth") == 0,
                300,
                "amfeishu to deliver what it accepted",
            )
            cards = server.metric("amfeishu_cards_sent_total")
            memory = procs.rss(server.proc.pid)  # type: ignore[union-attr]
    notes.append(
        f"Throughput, delivering: rounds amfeishu {rates['amfeishu']}, bare {rates['bare']}"
        f" req/s. All {sent} alerts were delivered in {cards:.0f} cards (notifications"
        " queued together merge into one card)."
    )
    return [
        *_ratio_rows("delivering", rates, goal=False),
        Row(
            "amfeishu RSS after the delivering run (VmRSS / VmHWM)",
            f"{memory['VmRSS']:.0f} / {memory['VmHWM']:.0f} MB",
        ),
    ]


def unreachable(directory: Path, notes: list[str]) -> list[Row]:
    config = procs.write_config(directory, _target(_unreachable()))
    with procs.amfeishu(config, directory) as server, procs.bare() as bare:
        rates = _alternate(server, bare, "u")
        accepted = WARMUP + ROUNDS * REQUESTS
        depth = server.metric("amfeishu_outbox_depth")
        memory = procs.rss(server.proc.pid)  # type: ignore[union-attr]
    notes.append(
        f"Throughput, Feishu unreachable: rounds amfeishu {rates['amfeishu']}, bare"
        f" {rates['bare']} req/s; {accepted} notifications accepted, {depth:.0f} waiting at"
        f" the end (in memory up to the worker's window, the rest in the outbox only)."
    )
    peak = memory["VmHWM"]
    return [
        *_ratio_rows("Feishu unreachable", rates),
        Row(
            "amfeishu peak RSS during the unreachable run (VmHWM)",
            f"{peak:.0f} MB",
            f"≤ {GOAL_PEAK_MB} MB",
            peak <= GOAL_PEAK_MB,
        ),
    ]


def _settled_rss(pid: int) -> float:
    """VmRSS once two readings a quarter second apart agree within 64 kB (at most 5 s)."""
    last = procs.rss(pid)["VmRSS"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.25)  # sampling interval, not synchronisation
        now = procs.rss(pid)["VmRSS"]
        if abs(now - last) < 1 / 16:
            return now
        last = now
    return last


def waiting(directory: Path, notes: list[str]) -> list[Row]:
    """VmRSS of the real process before and after WAITING notifications queue in one
    worker (Feishu unreachable, grouping wait an hour so nothing is attempted)."""
    config = procs.write_config(directory, _target(_unreachable()), grouping={"wait": "1h"})
    with procs.amfeishu(config, directory) as server:
        pid = server.proc.pid  # type: ignore[union-attr]
        url = f"{server.url}/alerts/bench"
        procs.load(url, 500, "w-warm", CONCURRENCY)  # allocator, caches, SQLite pages
        before = _settled_rss(pid)
        procs.load(url, WAITING, "w", CONCURRENCY)
        wait_until(
            lambda: server.metric("amfeishu_outbox_depth") >= 500 + WAITING, 30, "all queued"
        )
        after = _settled_rss(pid)
    per = (after - before) * 1024 / WAITING  # kB
    notes.append(
        f"Memory per waiting notification: VmRSS of the amfeishu process before and after"
        f" {WAITING} more 5-alert notifications (~2.4 kB of JSON each) queued in one worker,"
        f" {before:.1f} → {after:.1f} MB, divided by {WAITING}; includes everything the"
        " process keeps per notification (worker queue, dispatcher's seen-set, SQLite cache)."
    )
    return [
        Row(
            "Memory per notification waiting in a worker (ΔVmRSS / count)",
            f"{per:.1f} kB",
            f"≤ {GOAL_WAITING_KB:.0f} kB",
            per <= GOAL_WAITING_KB,
        )
    ]


def run(notes: list[str]) -> list[Row]:
    rows: list[Row] = []
    for scenario in (unreachable, delivering, waiting):
        with tempfile.TemporaryDirectory(prefix="amfeishu-bench-") as tmp:
            rows += scenario(Path(tmp), notes)
    notes.append(
        f"Throughput: {ROUNDS} alternating rounds of {REQUESTS} requests after {WARMUP} to"
        f" warm up, {CONCURRENCY} keep-alive connections; req/s are medians, the ratio is the"
        " median of each round's amfeishu/bare (back to back); generator:"
        " benchmarks/load.py writing pre-built requests on asyncio streams in its own process"
        " (httpx.AsyncClient tops out near 800 req/s here, below the baseline)."
    )
    return rows
