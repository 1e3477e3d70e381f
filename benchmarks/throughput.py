"""Receiver throughput: `POST /alerts/{target}` (5 alerts, durable SQLite enqueue, delivery
to a fast Feishu-like server running) against a bare Starlette endpoint that only parses
the JSON, same uvicorn settings, same load generator, alternating rounds."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks import procs
from benchmarks.report import Row
from tests.support.processes import wait_until

REQUESTS = 5000
WARMUP = 1000
ROUNDS = 3
CONCURRENCY = 16
GOAL = 0.6


def run(notes: list[str]) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="amfeishu-bench-") as tmp:
        directory = Path(tmp)
        with procs.fast_fake("bench") as fake:
            targets = {
                "bench": {
                    "webhook": f"{fake}/open-apis/bot/v2/hook/bench",
                    "language": "en",
                    "rate_limit": {"per_second": 100_000, "per_minute": 6_000_000},
                }
            }
            config = procs.write_config(directory, targets)
            with procs.amfeishu(config, directory) as server, procs.bare() as bare:
                urls = {"amfeishu": f"{server.url}/alerts/bench", "bare": f"{bare}/alerts/bench"}
                for name, url in urls.items():
                    procs.load(url, WARMUP, f"warm-{name}", CONCURRENCY)
                rates: dict[str, list[float]] = {"amfeishu": [], "bare": []}
                for i in range(ROUNDS):
                    for name, url in urls.items():
                        result = procs.load(url, REQUESTS, f"r{i}-{name}", CONCURRENCY)
                        rates[name].append(result["rps"])
                sent = (WARMUP + ROUNDS * REQUESTS) * 5
                wait_until(
                    lambda: server.metric("amfeishu_outbox_depth") == 0,
                    300,
                    "amfeishu to deliver what it accepted",
                )
                cards = server.metric("amfeishu_cards_sent_total")
                memory = procs.rss(server.proc.pid)  # type: ignore[union-attr]
    ours, base = statistics.median(rates["amfeishu"]), statistics.median(rates["bare"])
    ratio = ours / base
    notes.append(
        f"Throughput: {ROUNDS} alternating rounds of {REQUESTS} requests, {CONCURRENCY}"
        f" keep-alive connections, medians; rounds amfeishu {rates['amfeishu']},"
        f" bare {rates['bare']} req/s; generator: benchmarks/load.py writing pre-built"
        " requests on asyncio streams in its own process (httpx.AsyncClient tops out near"
        " 800 req/s here, below the baseline). All"
        f" {sent} alerts were delivered"
        f" in {cards:.0f} cards (notifications queued together merge into one card)."
    )
    return [
        Row("Receiver: POST /alerts/{target}, 5 alerts, SQLite, delivering", f"{ours:,.0f} req/s"),
        Row("Baseline: bare Starlette endpoint parsing the JSON", f"{base:,.0f} req/s"),
        Row("Receiver / baseline", f"{ratio:.2f}", f"≥ {GOAL}", ratio >= GOAL),
        Row(
            "amfeishu RSS after the throughput run (VmRSS / VmHWM)",
            f"{memory['VmRSS']:.0f} / {memory['VmHWM']:.0f} MB",
        ),
    ]
