"""The Prometheus metrics (README.md, "Metrics").

Labels carry target names, never URLs or secrets. Besides amfeishu's own, each
registry carries the standard process_* and python_* collectors (memory and
CPU are watched in production), and no `_created` series.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from amfeishu import __version__

# Once per process, before any metric exists: a `_created` series per counter
# doubles the scrape and nobody queries it.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """One registry per app, so tests can run several apps in one process."""

    def __init__(self) -> None:
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.alerts_received = Counter(
            "amfeishu_alerts_received", "Alerts received, by target.", ["target"], registry=r
        )
        self.requests = Counter(
            "amfeishu_requests",
            "Webhook requests by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.unrouted_alerts = Counter(
            "amfeishu_alerts_unrouted", "Alerts that matched no route.", registry=r
        )
        self.notifications = Counter(
            "amfeishu_notifications",
            "Notifications by final outcome: delivered, deduplicated, failed, dead, skipped.",
            ["target", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "amfeishu_delivery_attempts",
            "Delivery attempts by result, Feishu code and reason (a closed set).",
            ["target", "result", "code", "reason"],
            registry=r,
        )
        self.cards = Counter("amfeishu_cards_sent", "Cards delivered.", ["target"], registry=r)
        self.card_updates = Counter(
            "amfeishu_card_updates",
            "App cards updated in place, by result (delivered, retry, gone, …).",
            ["target", "result"],
            registry=r,
        )
        self.callbacks = Counter(
            "amfeishu_callbacks",
            "Card button clicks by app, action and result (done, failed, unknown).",
            ["app", "action", "result"],
            registry=r,
        )
        self.token_refreshes = Counter(
            "amfeishu_token_refreshes",
            "Feishu app tenant_access_token fetches by app and result (ok, failed).",
            ["app", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "amfeishu_delivery_latency_seconds",
            "From receipt to Feishu's code == 0.",
            ["target"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
        )
        self.outbox_depth = Gauge(
            "amfeishu_outbox_depth", "Notifications pending delivery.", ["target"], registry=r
        )
        self.dead_letters = Gauge(
            "amfeishu_dead_letters", "Notifications kept as dead letters.", ["target"], registry=r
        )
        self.rate_limit_waits = Counter(
            "amfeishu_rate_limit_waits",
            "Times a send waited for the bot's rate limit.",
            ["target"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            "amfeishu_rate_limit_wait_seconds",
            "Seconds spent waiting for the rate limit.",
            ["target"],
            registry=r,
        )
        self.template_errors = Counter(
            "amfeishu_template_errors",
            "Templates that failed; the safe card went out instead.",
            ["target"],
            registry=r,
        )
        self.reload_ok = Gauge(
            "amfeishu_config_last_reload_successful",
            "Whether the last configuration reload succeeded.",
            registry=r,
        )
        self.reload_time = Gauge(
            "amfeishu_config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration reload.",
            registry=r,
        )
        self.config_hash = Gauge(
            "amfeishu_config_hash", "Hash of the loaded configuration.", registry=r
        )
        Info("amfeishu_build", "Build information.", registry=r).info(build_labels(os.environ))

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: labels() takes a lock and hashes, and the
        hot path asks for the same few children on every request."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


def build_labels(env: Mapping[str, str]) -> dict[str, str]:
    """amfeishu_build_info's labels; the image build passes its commit as AMFEISHU_REVISION."""
    return {
        "version": __version__,
        "revision": env.get("AMFEISHU_REVISION") or "unknown",
        "python_version": platform.python_version(),
    }
