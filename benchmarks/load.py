"""Load generator, run as its own process: a fixed number of POSTs over N keep-alive
connections, each request a distinct 5-alert notification; prints one JSON line.

    python -m benchmarks.load --url http://127.0.0.1:8064/alerts/bench --requests 5000

`--client raw` (default) writes pre-built HTTP/1.1 requests on asyncio streams: it costs
a few µs per request, so the server, not the generator, is what is measured on a small
machine. `--client httpx` uses httpx.AsyncClient (about 10x the client CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx

from benchmarks.payloads import notification


def bodies(prefix: str, count: int, alerts: int) -> list[bytes]:
    return [json.dumps(notification(f"{prefix}-{i}", alerts)).encode() for i in range(count)]


async def _raw(url: str, reqs: list[bytes], concurrency: int, headers: dict[str, str]) -> Counter:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    statuses: Counter[str] = Counter()
    queue = iter(reqs)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for body in queue:
                head = (
                    f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"{extra}\r\n"
                )
                writer.write(head.encode() + body)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in answer.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                statuses[answer[9:12].decode()] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return statuses


async def _httpx(url: str, reqs: list[bytes], concurrency: int, headers: dict[str, str]) -> Counter:
    statuses: Counter[str] = Counter()
    queue = iter(reqs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def connection() -> None:
            for body in queue:
                response = await client.post(
                    url, content=body, headers={"Content-Type": "application/json", **headers}
                )
                statuses[str(response.status_code)] += 1

        await asyncio.gather(*(connection() for _ in range(concurrency)))
    return statuses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--alerts", type=int, default=5)
    p.add_argument("--prefix", default="load", help="makes groupKeys distinct between runs")
    p.add_argument("--client", choices=["raw", "httpx"], default="raw")
    p.add_argument("--header", action="append", default=[], metavar="NAME: VALUE")
    args = p.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    reqs = bodies(args.prefix, args.requests, args.alerts)
    run = _raw if args.client == "raw" else _httpx
    started = time.perf_counter()
    statuses = asyncio.run(run(args.url, reqs, args.concurrency, headers))
    seconds = time.perf_counter() - started
    result = {
        "requests": args.requests,
        "seconds": round(seconds, 3),
        "rps": round(args.requests / seconds, 1),
        "statuses": dict(statuses),
        "client": args.client,
        "concurrency": args.concurrency,
    }
    print(json.dumps(result), flush=True)
    return 0 if statuses.get("200", 0) == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
