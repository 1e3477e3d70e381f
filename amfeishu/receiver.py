"""The webhook endpoints: parse, route, and queue durably before answering.

POST /alerts (routed by `routes`), /alerts/{target} and /api/v1/notify/{target}.
A 200 means the notification is committed to the outbox: it will be delivered.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from amfeishu.backend.base import NewEntry, StorageError
from amfeishu.dedup import dedup_key
from amfeishu.edge import HTTPError, read_json
from amfeishu.events import parse_event
from amfeishu.models import Notification, PayloadError, parse_notification
from amfeishu.router import route
from amfeishu.service import Service

log = logging.getLogger("amfeishu.receiver")
DEFAULT_BODY_LIMIT = 1 << 20


class Receiver:
    def __init__(self, service: Service, body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.service = service
        self.body_limit = body_limit

    def _known_target(self, request: Request) -> str | None:
        name = request.path_params.get("target")
        if name is not None and name not in self.service.config.targets:
            raise HTTPError(404, f"unknown target {name!r}")
        return name

    async def alerts(self, request: Request) -> Response:
        name = self._known_target(request)
        data = await read_json(request, self.body_limit)
        try:
            notification = parse_notification(data)
        except PayloadError as exc:
            raise HTTPError(400, str(exc)) from None
        if name is not None:
            per_target = {name: notification}
        else:
            routed = route(notification, self.service.config.routes)
            per_target = routed.per_target
            if routed.unmatched:
                self.service.metrics.unrouted_alerts.inc(len(routed.unmatched))
                log.warning(
                    "%d alert(s) matched no route: %s",
                    len(routed.unmatched),
                    ", ".join(sorted({a.name or a.fingerprint for a in routed.unmatched})),
                )
        queued = await self._enqueue(request, per_target, notification, data)
        unrouted = len(notification.alerts) - len(
            {a.fingerprint for n in per_target.values() for a in n.alerts}
        )
        return JSONResponse(
            {"status": "queued", "targets": queued, "unrouted_alerts": max(0, unrouted)}
        )

    async def notify(self, request: Request) -> Response:
        name = request.path_params["target"]
        self._known_target(request)
        data = await read_json(request, self.body_limit)
        try:
            notification = parse_event(data)
        except PayloadError as exc:
            raise HTTPError(400, str(exc)) from None
        queued = await self._enqueue(request, {name: notification})
        return JSONResponse({"status": "queued", "targets": queued})

    async def _enqueue(
        self,
        request: Request,
        per_target: dict[str, Notification],
        original: Notification | None = None,
        raw: Any = None,
    ) -> dict[str, int]:
        """Durably queue; `raw` is stored as received for the targets that get `original`."""
        service = self.service
        if not service.ready or service.dispatcher is None:
            raise HTTPError(503, "not ready: the outbox is not open")
        trace = getattr(request.state, "traceparent", "")
        items = [
            NewEntry(name, raw if n is original else n.to_dict(), dedup_key(name, n), trace)
            for name, n in per_target.items()
        ]
        try:
            entries = await service.backend.outbox.put(items)
        except StorageError as exc:
            raise HTTPError(503, f"outbox unavailable, retry later: {exc}") from None
        for entry, n in zip(entries, per_target.values(), strict=True):
            entry.notification = n  # the worker need not parse it again
        if not service.backend.shared:  # a shared outbox is consumed by whichever replica
            service.dispatcher.submit(entries)
        counts = {}
        for name, n in per_target.items():
            service.metrics.alerts_received.labels(name).inc(len(n.alerts))
            counts[name] = len(n.alerts)
        log.debug("queued %s", ", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing")
        return counts
