"""Dedup keys and the window that drops what an HA Alertmanager pair sends twice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Protocol

from cachetools import TTLCache

from amfeishu.models import Notification, Receipt


def dedup_key(target: str, notification: Notification | Receipt) -> str:
    """target, groupKey, status and the (fingerprint, status, startsAt) set — not endsAt,
    which Alertmanager keeps moving while an alert fires."""
    if isinstance(notification, Receipt):
        triples: Iterable[tuple[str, str, str]] = notification.alerts
    else:
        triples = ((a.fingerprint, a.status, a.starts_at) for a in notification.alerts)
    alerts = sorted(set(triples))
    text = json.dumps([target, notification.group_key, notification.status, alerts])
    return hashlib.sha256(text.encode()).hexdigest()


class Dedup(Protocol):
    """What the dispatcher needs: local (TTLCache) or shared between replicas (Redis)."""

    # `entry` is the outbox id asking: shared dedup marks the key with it, so an entry
    # that a replica marked and then died with is not taken for its own duplicate.
    async def first_time(self, key: str, entry: int | None = None) -> bool: ...
    async def remember(self, key: str) -> None: ...
    async def forget(self, key: str) -> None: ...


class DedupWindow:
    """In-process window (cachetools TTLCache), seeded from the outbox on start."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.enabled = ttl > 0
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=max(1, max_entries), ttl=max(ttl, 0.001))

    async def first_time(self, key: str, entry: int | None = None) -> bool:
        """True (and remembered) when the key was not seen within the window."""
        del entry  # one process: the window dies with it, so an entry never meets its own mark
        if not self.enabled:
            return True
        if key in self._seen:
            return False
        self._seen[key] = True
        return True

    async def remember(self, key: str) -> None:
        if self.enabled:
            self._seen[key] = True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)
