"""The Starlette app: routes, their guards, and a lifespan that starts and stops the Service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from amfeishu.backend.base import StorageError
from amfeishu.callbacks import Callbacks
from amfeishu.edge import AuthMiddleware, Endpoint, HTTPError, Traced, error_response
from amfeishu.receiver import DEFAULT_BODY_LIMIT, Receiver
from amfeishu.service import Service


def guarded(service: Service, endpoint: str | None = None) -> list[Middleware]:
    """The middleware of a protected route: traced (when named), then authenticated."""
    auth = Middleware(AuthMiddleware, auth=lambda: service.config.auth)
    if endpoint is None:
        return [auth]
    return [Middleware(Traced, endpoint=endpoint, metrics=lambda: service.metrics), auth]


class App(Starlette):
    """Starlette, with `hot` (POST /alerts/{target}, what Alertmanager calls) taken before
    the app-wide middleware and the router: the route's own Traced answers every error
    as JSON, so those layers only cost time there (py-spy: ~15 µs of ~190 a request)."""

    def __init__(self, hot: Route, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match, child = self.hot.matches(scope)
            if match is Match.FULL:  # a wrong method is PARTIAL: the router's 405
                scope.update(child)
                scope["app"] = self
                await self.hot.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def build_app(
    service: Service,
    *,
    body_limit: int = DEFAULT_BODY_LIMIT,
    extra_routes: list[BaseRoute] | None = None,
) -> App:
    receiver = Receiver(service, body_limit)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    async def healthy(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def ready(request: Request) -> Response:
        if not service.ready:
            return error_response(503, "not ready: starting or stopping")
        try:
            await service.backend.outbox.check()
        except StorageError as exc:
            return error_response(503, f"outbox unavailable: {exc}")
        return Response("ready\n", media_type="text/plain")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def reload(request: Request) -> Response:
        problems = service.reload()
        if problems:
            raise HTTPError(500, "reload failed, kept the old config: " + "; ".join(problems))
        return JSONResponse({"status": "reloaded"})

    def post(path: str, endpoint: Callable[..., Any], name: str) -> Route:
        return Route(path, endpoint, methods=["POST"], middleware=guarded(service, name))

    alerts_target = post("/alerts/{target}", Endpoint(receiver.alerts), "alerts_target")
    routes: list[BaseRoute] = [
        post("/alerts", Endpoint(receiver.alerts), "alerts"),
        alerts_target,
        post("/api/v1/notify/{target}", receiver.notify, "notify"),
        post("/-/reload", reload, "reload"),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        # Not behind auth (Feishu cannot send our token): Feishu's signature and token guard it.
        Route(
            "/feishu/callback/{app}",
            Callbacks(service).handle,
            methods=["POST"],
            middleware=[Middleware(Traced, endpoint="callback", metrics=lambda: service.metrics)],
        ),
        *(extra_routes or []),
    ]
    return App(alerts_target, routes=routes, lifespan=lifespan)
