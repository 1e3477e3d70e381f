"""The real Prometheus Alertmanager as a process, for end-to-end tests.

Each instance gets its own storage dir (a reused one replays its notification
log), a free web port and no cluster listener (no gossip, no port 9094), so
two instances side by side behave like an HA pair that cannot see each other.
Alerts go in through the v2 API, exactly as Prometheus sends them.
"""

from __future__ import annotations

import copy
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import free_port, wait_until


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def alert(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    starts_at: datetime | None = None,
) -> dict[str, Any]:
    """A postable alert (v2 API). Pass the same `starts_at` to several Alertmanagers to get
    the same notification from each, as an HA pair fed by one Prometheus would.

    startsAt defaults to now: Alertmanager flushes a group at once, without waiting
    group_wait for the rest of a batch, when an alert in it started group_wait ago.
    """
    start = starts_at or datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": "critical", **(labels or {})},
        "annotations": {"summary": f"{name} is firing", **(annotations or {})},
        "startsAt": rfc3339(start),
        "generatorURL": f"http://prometheus.example/graph?g0.expr={name}",
    }


def resolved(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same alerts ending now (not before their startsAt): Alertmanager resolves them."""
    ends = rfc3339(datetime.now(UTC))
    return [{**copy.deepcopy(a), "endsAt": ends} for a in alerts]


def webhook_config(
    url: str,
    token: str,
    *,
    group_by: tuple[str, ...] = ("alertname",),
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> dict[str, Any]:
    """An alertmanager.yml with one receiver posting to amfeishu with a bearer token."""
    return {
        "route": {
            "receiver": "feishu",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "feishu",
                "webhook_configs": [
                    {
                        "url": url,
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }


class Alertmanager:
    """`prometheus-alertmanager` on a free port, with a fresh storage dir under `workdir`."""

    def __init__(
        self,
        binary: str,
        config: dict[str, Any],
        *,
        workdir: Path,
        name: str = "alertmanager",
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=False)  # never a reused notification log
        self.config_path = self.dir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.dir / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Alertmanager:
        cmd = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._ready, timeout, f"Alertmanager ready on {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"alertmanager exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
            )
        return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200

    def post(self, alerts: list[dict[str, Any]]) -> None:
        response = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)
        assert response.status_code == 200, f"{response.status_code}: {response.text}"

    def alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager holds (active, silenced and inhibited)."""
        return httpx.get(f"{self.url}/api/v2/alerts", timeout=10).json()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
