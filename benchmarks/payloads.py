"""Alertmanager webhook payloads for the benchmarks: realistic, and distinct per request
(own groupKey and fingerprints) so that amfeishu's dedup never drops one."""

from __future__ import annotations

import hashlib
from typing import Any


def alert(name: str, index: int, severity: str = "warning") -> dict[str, Any]:
    pod = f"api-{index}-7f9c6d"
    labels = {
        "alertname": name,
        "namespace": "payments",
        "pod": pod,
        "container": "api",
        "severity": severity,
        "team": "payments",
    }
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "summary": f"Pod payments/{pod} is crash looping",
            "description": f'Pod payments/{pod} (api) is waiting (reason: "CrashLoopBackOff").',
            "runbook_url": "https://runbooks.example/kubepodcrashlooping",
        },
        "startsAt": "2026-11-28T13:57:05Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=kube_pod_status",
        "fingerprint": hashlib.sha256(f"{name}/{index}".encode()).hexdigest()[:16],
    }


def notification(
    group: str, alerts: int, *, names: list[str] | None = None, severity: str = "warning"
) -> dict[str, Any]:
    """One notification of `alerts` alerts; alert j is named names[j] (default: `group`)."""
    items = [alert(names[j] if names else group, j, severity) for j in range(alerts)]
    common = {"namespace": "payments", "severity": severity, "team": "payments"}
    if not names:
        common["alertname"] = group
    return {
        "receiver": "feishu",
        "status": "firing",
        "alerts": items,
        "groupLabels": {"alertname": group},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "truncatedAlerts": 0,
    }
