"""Starlette routes and lifespan: the only place errors become HTTP statuses.

Toward Alertmanager: 4xx only for input that will never succeed (it gives
up on 4xx), 5xx for our own trouble (it retries those).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amfeishu import reloading, watch
from amfeishu.backends import Backend, open_backend
from amfeishu.dedup import dedup_key
from amfeishu.dispatcher import Dispatcher
from amfeishu.events import parse_event
from amfeishu.feishu import FeishuClient
from amfeishu.logs import bind_request_id, new_trace
from amfeishu.metrics import Metrics
from amfeishu.models import Notification, PayloadError, parse_notification
from amfeishu.outbox import NewEntry, Outbox, OutboxError
from amfeishu.router import route
from amfeishu.settings import Auth, Config
from amfeishu.templating import Renderer

log = logging.getLogger("amfeishu.receiver")
DEFAULT_BODY_LIMIT = 1 << 20


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class State:
    """Everything a request needs; `config` and `renderer` are swapped whole on reload."""

    config: Config
    renderer: Renderer
    backend: Backend
    metrics: Metrics
    dispatcher: Dispatcher | None = None
    ready: bool = False
    loader: reloading.Loader | None = None
    reload_hooks: list[Callable[[Config], None]] = field(default_factory=list)

    @property
    def outbox(self) -> Outbox:
        return self.backend.outbox


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def check_auth(auth: Auth, header: str | None) -> bool:
    """Bearer or basic, as Alertmanager's http_config sends them, in constant time."""
    if not auth.enabled:
        return True
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and auth.bearer_token is not None:
        return hmac.compare_digest(value.encode(), auth.bearer_token.get().encode())
    if scheme.lower() == "basic" and auth.basic_username is not None and auth.basic_password:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), auth.basic_username.encode())
        ok_pass = hmac.compare_digest(password.encode(), auth.basic_password.get().encode())
        return ok_user and ok_pass
    return False


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, or HTTPError 413/400; never reads past the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"body is {declared} bytes, more than the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body is more than the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise HTTPError(400, "body is empty; expected an Alertmanager webhook payload (JSON)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPError(400, f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise HTTPError(400, f"body is not JSON: {exc.msg} at {where}") from None
    except RecursionError:  # the C decoder stops hostile nesting itself
        raise HTTPError(400, "body nests too deeply to be a webhook payload") from None
    except ValueError as exc:
        raise HTTPError(400, f"body is not acceptable JSON: {exc}") from None


class Receiver:
    def __init__(self, state: State, body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.state = state
        self.body_limit = body_limit

    async def _guarded(self, request: Request, endpoint: str, handler: Any) -> Response:
        trace = new_trace(request.headers.get("traceparent"))
        with bind_request_id(trace.short):
            try:
                if not check_auth(self.state.config.auth, request.headers.get("authorization")):
                    raise HTTPError(401, "missing or wrong credentials")
                response = await handler(request, trace.traceparent)
            except HTTPError as exc:
                log.log(
                    logging.WARNING if exc.status < 500 else logging.ERROR,
                    "%s %s → %d: %s",
                    request.method,
                    request.url.path,
                    exc.status,
                    exc.message,
                )
                response = _error(exc.status, exc.message)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = 'Bearer realm="amfeishu"'
            except Exception:  # our bug: a 5xx, so Alertmanager retries rather than drops
                log.exception("%s %s failed", request.method, request.url.path)
                response = _error(500, "internal error; see the amfeishu log")
            response.headers["traceparent"] = trace.traceparent
            self.state.metrics.requests.labels(endpoint, str(response.status_code)).inc()
            return response

    async def alerts(self, request: Request) -> Response:
        return await self._guarded(request, "alerts", self._alerts)

    async def alerts_for_target(self, request: Request) -> Response:
        return await self._guarded(request, "alerts_target", self._alerts)

    async def notify(self, request: Request) -> Response:
        return await self._guarded(request, "notify", self._notify)

    def _known_target(self, request: Request) -> str | None:
        name = request.path_params.get("target")
        if name is not None and name not in self.state.config.targets:
            raise HTTPError(404, f"unknown target {name!r}")
        return name

    async def _alerts(self, request: Request, trace: str) -> Response:
        name = self._known_target(request)
        data = await read_json(request, self.body_limit)
        try:
            notification = parse_notification(data)
        except PayloadError as exc:
            raise HTTPError(400, str(exc)) from None
        if name is not None:
            per_target = {name: notification}
        else:
            routed = route(notification, self.state.config.routes)
            per_target = routed.per_target
            if routed.unmatched:
                self.state.metrics.unrouted_alerts.inc(len(routed.unmatched))
                log.warning(
                    "%d alert(s) matched no route: %s",
                    len(routed.unmatched),
                    ", ".join(sorted({a.name or a.fingerprint for a in routed.unmatched})),
                )
        queued = await self._enqueue(per_target, trace, notification, data)
        unrouted = len(notification.alerts) - len(
            {a.fingerprint for n in per_target.values() for a in n.alerts}
        )
        return JSONResponse(
            {"status": "queued", "targets": queued, "unrouted_alerts": max(0, unrouted)}
        )

    async def _notify(self, request: Request, trace: str) -> Response:
        name = self._known_target(request)
        assert name is not None  # the route always has {target}
        data = await read_json(request, self.body_limit)
        try:
            notification = parse_event(data)
        except PayloadError as exc:
            raise HTTPError(400, str(exc)) from None
        queued = await self._enqueue({name: notification}, trace)
        return JSONResponse({"status": "queued", "targets": queued})

    async def _enqueue(
        self,
        per_target: dict[str, Notification],
        trace: str,
        original: Notification | None = None,
        raw: Any = None,
    ) -> dict[str, int]:
        """Durably queue; `raw` is stored as received for the targets that get `original`."""
        state = self.state
        if not state.ready or state.dispatcher is None:
            raise HTTPError(503, "not ready: the outbox is not open")
        items = [
            NewEntry(name, raw if n is original else n.to_dict(), dedup_key(name, n), trace)
            for name, n in per_target.items()
        ]
        try:
            entries = await state.outbox.put(items)
        except OutboxError as exc:
            raise HTTPError(503, f"outbox unavailable, retry later: {exc}") from None
        for entry, n in zip(entries, per_target.values(), strict=True):
            entry.notification = n  # the worker need not parse it again
        if not state.backend.shared:  # a shared outbox is consumed by whichever replica
            state.dispatcher.submit(entries)
        counts = {}
        for name, n in per_target.items():
            state.metrics.alerts_received.labels(name).inc(len(n.alerts))
            counts[name] = len(n.alerts)
        log.debug("queued %s", ", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing")
        return counts


def build_app(
    state: State,
    *,
    client: FeishuClient | None = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
    shutdown_grace: float = 10.0,
    extra_routes: list[Route] | None = None,
) -> Starlette:
    receiver = Receiver(state, body_limit)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        feishu = client or FeishuClient(timeout=state.config.delivery.timeout)
        await state.outbox.open()
        state.dispatcher = Dispatcher(
            state.config, state.renderer, state.backend, feishu, state.metrics
        )
        await state.dispatcher.start()
        state.metrics.reload_ok.set(1)
        state.metrics.reload_time.set(time.time())
        state.ready = True
        # Start-up objects live as long as the process: keep them out of the
        # collector's full passes, which otherwise stall requests for tens of ms.
        gc.freeze()
        interval = watch.configured_interval()
        watcher = None
        if state.loader is not None and interval:  # serve --config: reload on file changes
            watcher = asyncio.create_task(watch.watch(state, interval), name="config-watch")
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            state.ready = False
            await state.dispatcher.stop(shutdown_grace)
            await state.outbox.close()
            if client is None:
                await feishu.aclose()

    async def healthy(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def ready(request: Request) -> Response:
        if not state.ready:
            return _error(503, "not ready: starting or stopping")
        try:
            await state.outbox.check()
        except OutboxError as exc:
            return _error(503, f"outbox unavailable: {exc}")
        return Response("ready\n", media_type="text/plain")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def reload(request: Request) -> Response:
        if not check_auth(state.config.auth, request.headers.get("authorization")):
            return _error(401, "missing or wrong credentials")
        problems = reloading.reload(state)
        if problems:
            return _error(500, "reload failed, kept the old config: " + "; ".join(problems))
        return JSONResponse({"status": "reloaded"})

    routes = [
        Route("/alerts", receiver.alerts, methods=["POST"]),
        Route("/alerts/{target}", receiver.alerts_for_target, methods=["POST"]),
        Route("/api/v1/notify/{target}", receiver.notify, methods=["POST"]),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
        Route("/-/reload", reload, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def make_state(config: Config, loader: reloading.Loader | None = None) -> State:
    renderer = Renderer(
        config.templates.dir, language=config.templates.language, timezone=config.templates.timezone
    )
    state = State(config, renderer, open_backend(config), Metrics(), loader=loader)
    state.metrics.config_hash.set(reloading.config_hash(config))
    return state
