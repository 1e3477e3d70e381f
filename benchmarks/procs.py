"""Processes the benchmarks start (amfeishu, the bare baseline, the standalone Feishu fake),
and what they read from them (memory, metrics)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import ROOT, Amfeishu, free_port, wait_until

MB = 1024 * 1024


def rss(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB
    return out


def write_config(directory: Path, targets: dict[str, Any], **extra: Any) -> Path:
    data = {"storage": {"path": str(directory / "outbox.db")}, "targets": targets, **extra}
    path = directory / "amfeishu.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def amfeishu(config: Path, directory: Path) -> Iterator[Amfeishu]:
    server = Amfeishu(config, log_path=directory / "amfeishu.log")
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def _process(cmd: list[str], ready_url: str | None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        if ready_url:
            wait_until(lambda: httpx.get(ready_url, timeout=1).status_code == 200, 20, ready_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def bare(*args: str) -> Iterator[str]:
    """The baseline endpoint's base URL; `args` go to benchmarks.bare (--loop, --http)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "benchmarks.bare", "--listen", f"127.0.0.1:{port}", *args]
    with _process(cmd, f"{url}/-/ready"):
        yield url


@contextmanager
def fast_fake(token: str) -> Iterator[str]:
    """The standalone Feishu fake without rate limits, in its own process: its base URL."""
    cmd = [sys.executable, "-m", "tests.support.feishu_fake", "--port", "0", "--bot", token]
    with _process([*cmd, "--fast"], None) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"the Feishu fake did not start: {line!r}")
        yield line.split(" ", 1)[1]


def load(url: str, requests: int, prefix: str, concurrency: int, client: str = "raw") -> dict:
    """Run benchmarks.load in its own process; its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.load", "--url", url, "--requests", str(requests)]
    cmd += ["--prefix", prefix, "--concurrency", str(concurrency), "--client", client]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if not done.stdout.strip():
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if done.returncode != 0:
        raise RuntimeError(f"load generator saw errors: {result}")
    return result


def histogram(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram, all label sets summed: {le: count}."""
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            head, _, value = line.rpartition(" ")
            le = head.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile."""
    total = buckets.get(float("inf"), 0.0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= q * total:
            return bound
    return None
