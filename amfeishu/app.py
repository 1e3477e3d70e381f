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
from starlette.routing import BaseRoute, Route

from amfeishu.backend.base import StorageError
from amfeishu.callbacks import Callbacks
from amfeishu.edge import AuthMiddleware, HTTPError, Traced, error_response
from amfeishu.receiver import DEFAULT_BODY_LIMIT, Receiver
from amfeishu.service import Service


def guarded(service: Service, endpoint: str | None = None) -> list[Middleware]:
    """The middleware of a protected route: traced (when named), then authenticated."""
    auth = Middleware(AuthMiddleware, auth=lambda: service.config.auth)
    if endpoint is None:
        return [auth]
    return [Middleware(Traced, endpoint=endpoint, metrics=lambda: service.metrics), auth]


def build_app(
    service: Service,
    *,
    body_limit: int = DEFAULT_BODY_LIMIT,
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
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

    routes: list[BaseRoute] = [
        post("/alerts", receiver.alerts, "alerts"),
        post("/alerts/{target}", receiver.alerts, "alerts_target"),
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
    return Starlette(routes=routes, lifespan=lifespan)
