"""The webhook endpoints: parse, route, and queue durably before answering.

POST /alerts (routed by `routes`), /alerts/{target} and /api/v1/notify/{target}.
A 200 means the notification is committed to the outbox: it will be delivered.

The hot path stays close to a bare endpoint's (benchmarks/throughput.py): the
body is decoded by msgspec straight from its bytes, and those bytes are what
the outbox stores and what a waiting worker keeps (amfeishu/models.py).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from amfeishu.backend.base import NewEntry, StorageError
from amfeishu.dedup import dedup_key
from amfeishu.edge import HTTPError, decode_json, json_response, read_body, read_json
from amfeishu.events import parse_event
from amfeishu.models import (
    Notification,
    PayloadError,
    decode_notification,
    decode_receipt,
    encode_notification,
    parse_notification,
)
from amfeishu.router import route
from amfeishu.service import Service

log = logging.getLogger("amfeishu.receiver")
DEFAULT_BODY_LIMIT = 1 << 20


def parse_body(raw: bytes) -> Notification:
    """The webhook body → Notification, or HTTPError 400 naming what is wrong."""
    notification = decode_notification(raw)
    if notification is None:  # refused by the fast path: the full parser says why
        try:
            notification = parse_notification(decode_json(raw))
        except PayloadError as exc:
            raise HTTPError(400, str(exc)) from None
    return notification


class Receiver:
    def __init__(self, service: Service, body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.service = service
        self.body_limit = body_limit

    def _known_target(self, scope: Scope) -> str | None:
        name: str | None = scope.get("path_params", {}).get("target")
        if name is not None and name not in self.service.config.targets:
            raise HTTPError(404, f"unknown target {name!r}")
        return name

    async def alerts(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /alerts and /alerts/{target}, as ASGI: the hot path (app.py)."""
        name = self._known_target(scope)
        raw = await read_body(scope, receive, self.body_limit)
        receipt = decode_receipt(raw) if name is not None else None
        if name is not None and receipt is not None:  # the usual call: stored as it came
            item = NewEntry(name, raw, dedup_key(name, receipt), _trace(scope), len(receipt.alerts))
            queued = await self._enqueue([item])
            answer = {"status": "queued", "targets": queued, "unrouted_alerts": 0}
            await json_response(answer)(scope, receive, send)
            return
        notification = parse_body(raw)  # routed by `routes`, or refused naming the field
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
        queued = await self._enqueue(_items(scope, per_target, notification, raw))
        sent = {a.fingerprint for n in per_target.values() for a in n.alerts}
        unrouted = max(0, len(notification.alerts) - len(sent))
        answer = {"status": "queued", "targets": queued, "unrouted_alerts": unrouted}
        await json_response(answer)(scope, receive, send)

    async def notify(self, request: Request) -> Response:
        name = request.path_params["target"]
        self._known_target(request.scope)
        data = await read_json(request, self.body_limit)
        try:
            notification = parse_event(data)
        except PayloadError as exc:
            raise HTTPError(400, str(exc)) from None
        queued = await self._enqueue(_items(request.scope, {name: notification}))
        return json_response({"status": "queued", "targets": queued})

    async def _enqueue(self, items: list[NewEntry]) -> dict[str, int]:
        """Durably queue; answers how many alerts each target got."""
        service = self.service
        if not service.ready or service.dispatcher is None:
            raise HTTPError(503, "not ready: the outbox is not open")
        try:
            entries = await service.backend.outbox.put(items)
        except StorageError as exc:
            raise HTTPError(503, f"outbox unavailable, retry later: {exc}") from None
        if not service.backend.shared:  # a shared outbox is consumed by whichever replica
            service.dispatcher.submit(entries)
        counts = {item.target: item.alerts for item in items}
        metrics = service.metrics
        for name, count in counts.items():
            metrics.child(metrics.alerts_received, name).inc(count)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("queued %s", ", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing")
        return counts


def _trace(scope: Scope) -> str:
    return str(scope.get("state", {}).get("traceparent", ""))  # set by Traced


def _items(
    scope: Scope,
    per_target: dict[str, Notification],
    original: Notification | None = None,
    raw: bytes = b"",
) -> list[NewEntry]:
    """One entry a target; `raw` is stored as received for the targets that get `original`."""
    trace = _trace(scope)
    return [
        NewEntry(
            name,
            raw if n is original else encode_notification(n),
            dedup_key(name, n),
            trace,
            len(n.alerts),
        )
        for name, n in per_target.items()
    ]
