"""Redis scale-out (issue #7): receiver throughput and send → Feishu latency with one and
two replicas sharing a redis-server, against one process on SQLite, in the same run on
the same machine (about a minute).

    python -m benchmarks.bench_redis

`run()` returns rows (measure, value, note). Redis runs as in production: append-only
file, fsync every second; SQLite as always: WAL, synchronous NORMAL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks import procs
from benchmarks.payloads import notification
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu, wait_until
from tests.support.redis_server import RedisServer

REQUESTS = 3000  # per load generator and round
WARMUP = 500
CONCURRENCY = 16  # keep-alive connections per load generator
RATE = 50  # notifications per second, open loop, for the latency runs
SECONDS = 6
SKIP = 1.0  # the first second (connections, template compilation) is not counted
TARGETS = 10  # leases spread them over the replicas
NAME = re.compile(r"RedisLatency-(\d+)(?!\d)")
UNLIMITED = {"per_second": 100_000, "per_minute": 6_000_000}
Setup = tuple[str, bool, int]  # label, on Redis, replicas
SETUPS: list[Setup] = [("SQLite, 1 process", False, 1), ("Redis, 1 replica", True, 1)]
SETUPS += [("Redis, 2 replicas", True, 2)]


@contextmanager
def _replicas(
    directory: Path, targets: dict[str, Any], redis: RedisServer | None, count: int
) -> Iterator[list[Amfeishu]]:
    directory.mkdir(parents=True)
    storage = {"redis_url": redis.url} if redis else {"path": str(directory / "outbox.db")}
    config = procs.write_config(directory, targets, storage=storage)
    with ExitStack() as stack:
        servers = []
        for i in range(count):
            server = Amfeishu(config, log_path=directory / f"amfeishu-{i}.log")
            stack.callback(server.stop)
            servers.append(server.start())
        yield servers


def _drained(servers: list[Amfeishu], redis: RedisServer | None) -> bool:
    if redis is None:
        return servers[0].metric("amfeishu_outbox_depth") == 0
    with redis.client() as client:
        return client.zcard("amfeishu:pending") == 0


def _load(urls: list[str], requests: int, prefix: str) -> list[dict[str, Any]]:
    """One load generator process per replica, all at once."""
    with ThreadPoolExecutor(len(urls)) as pool:
        jobs = [
            pool.submit(procs.load, url, requests, f"{prefix}-{k}", CONCURRENCY)
            for k, url in enumerate(urls)
        ]
        return [job.result() for job in jobs]


def _throughput(directory: Path, redis: RedisServer) -> dict[str, float]:
    rates: dict[str, float] = {}
    with procs.fast_fake("bench") as fake:
        hook = {"webhook": f"{fake}/open-apis/bot/v2/hook/bench", "language": "en"}
        targets = {"bench": {**hook, "rate_limit": UNLIMITED}}
        for n, (label, on_redis, count) in enumerate(SETUPS):
            redis.flush()
            store = redis if on_redis else None
            with _replicas(directory / f"throughput-{n}", targets, store, count) as servers:
                urls = [f"{s.url}/alerts/bench" for s in servers]
                _load(urls, WARMUP, f"warm-{n}")
                started = time.monotonic()
                results = _load(urls, REQUESTS, f"measure-{n}")
                seconds = max(time.monotonic() - started, max(r["seconds"] for r in results))
                rates[label] = sum(r["requests"] for r in results) / seconds
                wait_until(lambda s=servers, r=store: _drained(s, r), 120, f"{label} to deliver")
    return rates


async def _send(urls: list[str], count: int, sent: dict[int, float]) -> list[int]:
    """Open loop: request i leaves at start + i/RATE, to replica i % len(urls)."""
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(i: int) -> None:
            body = json.dumps(notification(f"RedisLatency-{i}", 1)).encode()
            url = f"{urls[i % len(urls)]}/alerts/t{i % TARGETS:02d}"
            sent[i] = time.monotonic()
            response = await client.post(
                url, content=body, headers={"Content-Type": "application/json"}
            )
            statuses.append(response.status_code)

        start = time.monotonic()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return statuses


def _latency(directory: Path, redis: RedisServer) -> dict[str, list[float]]:
    count = RATE * SECONDS
    out: dict[str, list[float]] = {}
    for n, (label, on_redis, replicas) in enumerate(SETUPS):
        redis.flush()
        store = redis if on_redis else None
        with FakeFeishu() as fake:
            targets = {
                f"t{k:02d}": {
                    "webhook": fake.add_bot(f"bot{k:02d}", per_second=None, per_minute=None),
                    "language": "en",
                    "rate_limit": UNLIMITED,
                }
                for k in range(TARGETS)
            }
            with _replicas(directory / f"latency-{n}", targets, store, replicas) as servers:
                if on_redis:  # every target's lease taken before the clock starts
                    wait_until(lambda: _leased(redis), 30, "the leases")
                sent: dict[int, float] = {}
                statuses = asyncio.run(_send([s.url for s in servers], count, sent))
                assert statuses.count(200) == count, f"not all accepted: {set(statuses)}"

                def arrived() -> dict[int, float]:
                    first: dict[int, float] = {}
                    for r in list(fake.received):
                        for m in NAME.findall(json.dumps(r.body)):
                            first.setdefault(int(m), r.at)
                    return first if len(first) == count else {}

                received = wait_until(arrived, 60, f"all {count} at the fake", interval=0.5)
        start = min(sent.values())
        out[label] = sorted(received[i] - sent[i] for i in sent if sent[i] - start >= SKIP)
    return out


def _leased(redis: RedisServer) -> bool:
    with redis.client() as client:
        return all(client.get(f"amfeishu:lease:t{k:02d}") for k in range(TARGETS))


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run() -> list[tuple[str, str, str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        return [("Redis scale-out", "not measured", "redis-server is not installed")]
    aof = ["--appendonly", "yes", "--appendfsync", "everysec"]
    with tempfile.TemporaryDirectory(prefix="amfeishu-bench-redis-") as tmp:
        directory = Path(tmp)
        with RedisServer(binary, directory / "redis", extra=aof) as redis:
            rates = _throughput(directory, redis)
            latencies = _latency(directory, redis)
    base = rates[SETUPS[0][0]]
    cpus = os.cpu_count() or 1
    rows = []
    for label, _, replicas in SETUPS:
        rate = rates[label]
        note = "baseline" if rate == base else f"{rate / base:.2f} × SQLite"
        note += f"; {REQUESTS} requests of 5 alerts over {CONCURRENCY} connections"
        if replicas > 1:
            note += f" to each replica at once ({replicas} load generators), all on {cpus} CPUs"
        rows.append((f"Receiver POST /alerts/{{target}}, {label}", f"{rate:,.0f} req/s", note))
    for label, _, replicas in SETUPS:
        values = latencies[label]
        p50, p99 = _quantile(values, 0.5), _quantile(values, 0.99)
        note = f"{RATE}/s over {TARGETS} targets, {len(values)} measured"
        if replicas > 1:
            note += ", requests alternating between replicas"
        rows.append(
            (
                f"Latency send → Feishu POST p50 / p99, {label}",
                f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms",
                f"{note}; mean {statistics.mean(values) * 1000:.1f} ms",
            )
        )
    return rows


def main() -> int:
    started = time.monotonic()
    rows = run()
    print("| Measure | Value | Note |\n| --- | --- | --- |")
    for measure, value, note in rows:
        print(f"| {measure} | {value} | {note} |")
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
