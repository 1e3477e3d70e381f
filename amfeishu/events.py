"""Plain events from scripts (`POST /api/v1/notify/{target}`) as one-alert notifications."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from amfeishu.models import SEVERITY_ORDER, Alert, Notification, PayloadError

MAX_TEXT = 16_000  # characters; the card's size guard trims further


def parse_event(data: Any) -> Notification:
    """`{"title", "text", "severity", "labels", "url", "status"}` → Notification."""
    if not isinstance(data, dict):
        raise PayloadError("body: must be a JSON object with title and text")
    unknown = sorted(set(data) - {"title", "text", "severity", "labels", "url", "status"})
    if unknown:
        raise PayloadError(
            f"{unknown[0]}: unknown field (known: title, text, severity, labels, url, status)"
        )
    fields = {}
    for key in ("title", "text", "severity", "url", "status"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise PayloadError(f"{key}: must be a string")
        fields[key] = (value or "").strip()
    if not fields["title"] and not fields["text"]:
        raise PayloadError("title: is required (or text)")
    severity = fields["severity"].lower() or "info"
    if severity not in SEVERITY_ORDER:
        raise PayloadError(
            f"severity: must be one of {', '.join(SEVERITY_ORDER)}, got {severity!r:.40}"
        )
    status = fields["status"] or "firing"
    if status not in ("firing", "resolved"):
        raise PayloadError(f'status: must be "firing" or "resolved", got {status!r:.40}')
    if fields["url"] and not fields["url"].startswith(("http://", "https://")):
        raise PayloadError("url: must start with http:// or https://")
    raw_labels = data.get("labels") or {}
    if not isinstance(raw_labels, dict) or not all(isinstance(v, str) for v in raw_labels.values()):
        raise PayloadError("labels: must be an object of strings")
    title = fields["title"] or fields["text"].splitlines()[0][:80]
    labels = {
        **{str(k): v for k, v in raw_labels.items()},
        "alertname": title,
        "severity": severity,
    }
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = fields["text"]
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n… ({len(fields['text']) - MAX_TEXT} more characters trimmed)"
    # One event = one notification: the fingerprint includes the text and time,
    # so two runs of the same failing job are two messages, not a duplicate.
    digest = hashlib.sha256(json.dumps([labels, text, now]).encode()).hexdigest()[:16]
    alert = Alert(
        status=status,
        labels=labels,
        annotations={"summary": title, "description": text},
        starts_at=now,
        ends_at=now if status == "resolved" else "0001-01-01T00:00:00Z",
        generator_url=fields["url"],
        fingerprint=digest,
    )
    return Notification(
        status=status,
        receiver="api",
        group_key=f"event:{digest}",
        group_labels={"alertname": title},
        common_labels=dict(labels),
        common_annotations=dict(alert.annotations),
        external_url="",
        alerts=(alert,),
    )
