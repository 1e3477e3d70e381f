"""The real Prometheus server as a process, for end-to-end tests.

Debian's `prometheus` (2.42 in bookworm) evaluates alerting rules and pushes what
fires to an Alertmanager, as in production
(https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/).
Only flags Prometheus 2.x has long had are used. Each instance gets a fresh
TSDB dir, a free port on 127.0.0.1 and an external URL equal to that address,
so an alert's generatorURL points back at this very Prometheus.

`Switch` is a scrape target whose one gauge the test sets, which makes a
rule's truth (`test_switch == 1`) something the test controls.
"""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import free_port, wait_until


class Switch:
    """A /metrics endpoint on 127.0.0.1 exposing `gauge` with the value last `set`."""

    def __init__(self, gauge: str = "test_switch", value: int = 0) -> None:
        self.gauge = gauge
        self.value = value
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """host:port, as a Prometheus static target."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def exposition(self) -> bytes:
        return f"# TYPE {self.gauge} gauge\n{self.gauge} {self.value}\n".encode()

    def set(self, value: int) -> None:
        self.value = value

    def start(self) -> Switch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> Switch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(switch: Switch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/metrics"
            body = switch.exposition() if found else b"not found\n"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one scrape a second would drown the test's output

    return Handler


def alert_rule(
    name: str,
    expr: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One alerting rule firing as soon as `expr` has a result (`for: 0s`)."""
    return {
        "alert": name,
        "expr": expr,
        "for": "0s",
        "labels": {"severity": "critical", **(labels or {})},
        "annotations": {"summary": f"{name} is firing", **(annotations or {})},
    }


def prometheus_config(
    *, alertmanager: str, scrape: list[str], interval: str = "1s"
) -> dict[str, Any]:
    """A prometheus.yml scraping `scrape` (host:port) and alerting to `alertmanager` (host:port).
    The rule file is added by Prometheus.start."""
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "switch", "static_configs": [{"targets": scrape}]}],
    }


class Prometheus:
    """`prometheus` on a free port with a fresh TSDB under `workdir`, serving `rules`."""

    def __init__(
        self,
        binary: str,
        config: dict[str, Any],
        rules: list[dict[str, Any]],
        *,
        workdir: Path,
        name: str = "prometheus",
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=False)  # never a reused TSDB
        rules_path = self.dir / "rules.yml"
        rules_path.write_text(
            yaml.safe_dump({"groups": [{"name": "test", "rules": rules}]}, sort_keys=False)
        )
        self.config_path = self.dir / "prometheus.yml"
        config = {**config, "rule_files": [str(rules_path)]}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        cmd = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            "--log.level=debug",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._ready, timeout, f"Prometheus ready on {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"prometheus exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
            )
        return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts its rules hold now (pending or firing), from the HTTP API."""
        answer = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        alerts: list[dict[str, Any]] = answer["data"]["alerts"]
        return alerts

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

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
