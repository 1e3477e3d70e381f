"""Start and stop real processes for end-to-end tests, waiting on conditions, never sleeps."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)  # polling interval, bounded by the deadline
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """wait_until inside an event loop: polls while the loop (and its threads) run on."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)  # polling interval, bounded by the deadline


class Amfeishu:
    """`amfeishu serve` as a real process on a free port."""

    def __init__(
        self,
        config: Path | None,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        log_path: Path,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.args = args or []
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Amfeishu:
        cmd = [sys.executable, "-m", "amfeishu", "serve", "--listen", f"127.0.0.1:{self.port}"]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        cmd += self.args
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"amfeishu exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
                )
            return httpx.get(f"{self.url}/-/ready", timeout=1, verify=False).status_code == 200

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except RuntimeError:
                raise
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError(f"amfeishu not ready after {timeout}s:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric_name = head.split("{", 1)[0]
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> Amfeishu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """One `amfeishu …` command (check-config, render, send, outbox) as a process."""
    return subprocess.run(
        [sys.executable, "-m", "amfeishu", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )
