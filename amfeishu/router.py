"""Alerts → targets, decided per alert with Alertmanager's first-match-then-continue rule."""

from __future__ import annotations

from dataclasses import dataclass

from amfeishu.config.types import Route
from amfeishu.matchers import matches_all
from amfeishu.models import Alert, Notification


@dataclass(frozen=True)
class Routed:
    per_target: dict[str, Notification]  # each target gets only its own alerts
    unmatched: tuple[Alert, ...]  # matched no route: counted and logged by the caller


def targets_for(labels: dict[str, str], routes: tuple[Route, ...]) -> list[str]:
    """Targets of the first matching route, and of later ones while `continue` is set."""
    chosen: list[str] = []
    for route in routes:
        if not matches_all(route.matchers, labels):
            continue
        chosen.extend(t for t in route.targets if t not in chosen)
        if not route.continue_:
            break
    return chosen


def route(notification: Notification, routes: tuple[Route, ...]) -> Routed:
    buckets: dict[str, list[Alert]] = {}
    unmatched: list[Alert] = []
    for alert in notification.alerts:
        names = targets_for(alert.labels, routes)
        if not names:
            unmatched.append(alert)
        for name in names:
            buckets.setdefault(name, []).append(alert)
    per_target = {
        name: notification
        if len(alerts) == len(notification.alerts)
        else notification.with_alerts(alerts)
        for name, alerts in buckets.items()
    }
    return Routed(per_target, tuple(unmatched))
