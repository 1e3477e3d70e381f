"""Latency from receipt to the Feishu POST at 100 notifications/s over 20 targets, no
throttling. The Feishu fake runs in this process (a thread), so the send time of each
request and the fake's receive time come from the same monotonic clock; each alert's
name carries its request number, read back from the card.

After a warm-up (connections, template compilation) three runs are measured; the
median run is reported, since a neighbour on a shared machine can stall one run."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import procs
from benchmarks.payloads import notification
from benchmarks.report import Row
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import wait_until

RATE = 100  # notifications per second
SECONDS = 10  # per run
RUNS = 3
WARMUP = 2.0  # seconds at RATE before the runs, not counted
TARGETS = 20
GOAL_P99 = 0.050
NAME = re.compile(r"Latency-(\d+)(?!\d)")
HISTOGRAM = "amfeishu_delivery_latency_seconds"


async def _send(url: str, ids: range, sent: dict[int, float]) -> list[int]:
    """Open loop: request i leaves on schedule at RATE, whatever the answers before it."""
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(i: int) -> None:
            body = json.dumps(notification(f"Latency-{i}", 1)).encode()
            target = f"t{i % TARGETS:02d}"
            headers = {"Content-Type": "application/json"}
            sent[i] = time.monotonic()
            response = await client.post(f"{url}/alerts/{target}", content=body, headers=headers)
            statuses.append(response.status_code)

        start = time.monotonic()
        tasks = []
        for k, i in enumerate(ids):
            await asyncio.sleep(max(0.0, start + k / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return statuses


class _Arrivals:
    """First receipt time at the fake of each request number, reading each card once."""

    def __init__(self, fake: FakeFeishu) -> None:
        self.fake, self.at, self.read = fake, dict[int, float](), 0

    def complete(self, ids: range) -> bool:
        received = list(self.fake.received)
        for r in received[self.read :]:
            for number in NAME.findall(json.dumps(r.body)):
                self.at.setdefault(int(number), r.at)
        self.read = len(received)
        return all(i in self.at for i in ids)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _metrics(url: str) -> dict[float, float]:
    return procs.histogram(httpx.get(f"{url}/metrics", timeout=10).text, HISTOGRAM)


def run(notes: list[str]) -> list[Row]:
    count = RATE * SECONDS
    with tempfile.TemporaryDirectory(prefix="amfeishu-bench-") as tmp, FakeFeishu() as fake:
        directory = Path(tmp)
        targets = {
            f"t{k:02d}": {
                "webhook": fake.add_bot(f"bot{k:02d}", per_second=None, per_minute=None),
                "language": "en",
                "rate_limit": {"per_second": 1000, "per_minute": 60_000},
            }
            for k in range(TARGETS)
        }
        config = procs.write_config(directory, targets)
        with procs.amfeishu(config, directory) as server:
            sent: dict[int, float] = {}
            arrivals = _Arrivals(fake)
            batches = [range(int(WARMUP * RATE))]
            for _ in range(RUNS):
                batches.append(range(batches[-1].stop, batches[-1].stop + count))
            runs: list[list[float]] = []
            warm: dict[float, float] = {}
            for n, ids in enumerate(batches):
                statuses = asyncio.run(_send(server.url, ids, sent))
                assert statuses.count(200) == len(ids), f"not all accepted: {set(statuses)}"
                wait_until(lambda ids=ids: arrivals.complete(ids), 60, "every card", interval=0.5)
                if n == 0:
                    warm = _metrics(server.url)
                else:
                    runs.append([arrivals.at[i] - sent[i] for i in ids])
            after = _metrics(server.url)
            cards = len(fake.received)
    measured = {le: total - warm.get(le, 0.0) for le, total in after.items()}
    hist_p99 = procs.bucket_quantile(measured, 0.99)
    p99s = [_quantile(r, 0.99) for r in runs]
    median = runs[p99s.index(statistics.median(p99s))]
    p50, p99 = _quantile(median, 0.5), _quantile(median, 0.99)
    every = [x for r in runs for x in r]
    notes.append(
        f"Latency: after a {WARMUP:.0f} s warm-up, {RUNS} runs of {count} one-alert"
        f" notifications at {RATE}/s over {TARGETS} targets ({cards} cards in all); the median"
        f" run is shown; p99 of the runs {', '.join(f'{x * 1000:.0f}' for x in p99s)} ms,"
        f" max {max(every) * 1000:.0f} ms. Measured from the client's send to the fake's"
        " receipt (after its card checks): it includes both HTTP round trips, an upper bound"
        " of receipt → POST. amfeishu's own histogram (receipt → Feishu's answer, all runs)"
        " puts p99 in the bucket"
        f" ≤ {hist_p99 * 1000 if hist_p99 is not None else float('nan'):.0f} ms."
    )
    return [
        Row(
            f"Latency send → Feishu POST, {RATE}/s over {TARGETS} targets: p50 / p99",
            f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms",
            "p99 ≤ 50 ms",
            p99 <= GOAL_P99,
        )
    ]
