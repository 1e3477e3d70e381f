"""Dedup keys and the window that drops what an HA Alertmanager pair sends twice."""

from __future__ import annotations

import hashlib
import json

from cachetools import TTLCache

from amfeishu.models import Notification


def dedup_key(target: str, notification: Notification) -> str:
    """target, groupKey, status and the (fingerprint, status, startsAt) set — not endsAt,
    which Alertmanager keeps moving while an alert fires."""
    alerts = sorted({(a.fingerprint, a.status, a.starts_at) for a in notification.alerts})
    text = json.dumps([target, notification.group_key, notification.status, alerts])
    return hashlib.sha256(text.encode()).hexdigest()


class DedupWindow:
    def __init__(self, ttl: float, max_entries: int) -> None:
        self.enabled = ttl > 0
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=max(1, max_entries), ttl=max(ttl, 0.001))

    def first_time(self, key: str) -> bool:
        """True (and remembered) when the key was not seen within the window."""
        if not self.enabled:
            return True
        if key in self._seen:
            return False
        self._seen[key] = True
        return True

    def remember(self, key: str) -> None:
        if self.enabled:
            self._seen[key] = True

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)
