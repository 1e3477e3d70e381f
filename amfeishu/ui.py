"""GET /ui: the template playground and the recent cards of preview targets.

Plain files from amfeishu/static plus a small JSON API. Edited templates are
rendered in the renderer's sandbox and never saved. Behind the same auth as
the API; off unless `serve --web.enable-ui`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from functools import partial
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from amfeishu.app import guarded
from amfeishu.cards.actions import sample_app_context
from amfeishu.cards.html import card_fragment
from amfeishu.cards.renderer import samples_dir
from amfeishu.cards.sets import STORM_FILE
from amfeishu.cards.storm import groups_of, storm_alerts
from amfeishu.config.types import Target
from amfeishu.edge import HTTPError, read_json
from amfeishu.events import parse_event
from amfeishu.feishu.webhook import MAX_BODY_BYTES, body_size
from amfeishu.generation import Generation
from amfeishu.models import Notification, PayloadError, parse_notification
from amfeishu.service import Service

BODY_LIMIT = 1 << 20
MAX_SOURCE = 256 * 1024
STATIC = {"index.html": "text/html", "playground.js": "text/javascript", "card.css": "text/css"}
SAMPLE_TITLES = {
    "firing": "firing: one alert",
    "resolved": "resolved",
    "group-firing": "firing: a group of alerts",
    "group-mixed": "mixed: firing and resolved",
    "many-alerts": "many alerts",
    "cjk-hostile-firing": "CJK and emoji",
    "quotes-markup": "quotes and markup",
}
# Scripts only from our own files; styles inline too (the card's colours and widths).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_LINE = re.compile(r"\.j2:(\d+):")
Handler = Callable[[Request], Awaitable[Response]]


def _static() -> Traversable:
    try:
        return resources.files("amfeishu.static")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent / "static"


def _samples() -> dict[str, Traversable]:
    root = samples_dir()
    items = sorted((p for p in root.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    return {p.name.removesuffix(".json"): p for p in items}


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=HEADERS)


def ui_routes(service: Service) -> list[BaseRoute]:
    renders = asyncio.Semaphore(2)  # a runaway template ties up at most two threads

    def answered(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPError as exc:
                return _json({"error": exc.message}, exc.status)

        return endpoint

    async def page(request: Request) -> Response:
        return await static_file("index.html")

    async def static(request: Request) -> Response:
        return await static_file(request.path_params["name"])

    async def static_file(name: str) -> Response:
        if name not in STATIC:
            raise HTTPError(404, f"no static file {name!r}")
        body = _static().joinpath(name).read_bytes()
        return Response(body, media_type=STATIC[name], headers=HEADERS)

    async def options(request: Request) -> Response:
        current = service.generation  # one generation for the whole answer
        renderer = current.renderer
        targets = [
            {
                "name": t.name,
                "template": t.template,
                "language": t.language,
                "msg_type": "cardkit" if t.card_template_id else t.msg_type,
                "preview": t.preview,
                "app": t.app is not None,
                "files": renderer.template_names(t.template),
            }
            for t in current.config.targets.values()
        ]
        samples = [{"name": k, "title": SAMPLE_TITLES.get(k, k)} for k in _samples()]
        return _json({"samples": samples, "targets": targets, "limit": MAX_BODY_BYTES})

    async def sample(request: Request) -> Response:
        item = _samples().get(request.path_params["name"])
        if item is None:
            raise HTTPError(404, f"no sample {request.path_params['name']!r}")
        return _json(json.loads(item.read_text("utf-8")))

    async def template(request: Request) -> Response:
        current = service.generation
        target = _target(current, request.query_params.get("target"))
        file = request.query_params.get("file", "")
        found = current.renderer.template_source(target.template, file)
        if found is None:
            raise HTTPError(404, f"template set {target.template!r} has no file {file!r}")
        return _json({"file": file, "origin": found[1], "source": found[0]})

    async def render(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPError(415, "content-type must be application/json")
        data = await read_json(request, BODY_LIMIT)
        if not isinstance(data, dict):
            raise HTTPError(400, "body must be an object: {payload, target, file?, source?}")
        notification = _notification(data.get("payload"))
        current = service.generation
        target = _target(current, data.get("target"))
        renderer = current.renderer
        source, file = data.get("source"), data.get("file")
        locale = "en_us" if data.get("locale") == "en_us" else "zh_cn"
        if source is not None:
            if not isinstance(source, str) or len(source) > MAX_SOURCE:
                raise HTTPError(400, f"source must be a string of at most {MAX_SOURCE} characters")
            if not isinstance(file, str) or file not in renderer.template_names(target.template):
                raise HTTPError(400, f"file: template set {target.template!r} has no {file!r}")
        async with renders:
            if file == STORM_FILE:  # the digest a storm sends, of this payload's alerts
                named = storm_alerts(notification.alerts)
                groups = groups_of(named, notification)
                rendered = await run_in_threadpool(
                    partial(renderer.render_storm, backlog=len(named), source=source),
                    notification,
                    groups,
                    target,
                )
            elif source is None:
                app = sample_app_context(target)  # an app target: its buttons and state lines
                rendered = await run_in_threadpool(
                    partial(renderer.render, app=app), notification, target
                )
            else:
                rendered = await run_in_threadpool(
                    partial(renderer.render_source, app=sample_app_context(target)),
                    notification,
                    target,
                    str(file),
                    source,
                )
        line = _LINE.search(rendered.error or "")
        return _json(
            {
                "template": rendered.template,
                "template_error": rendered.error,
                "error_line": int(line[1]) if line else None,
                "message": rendered.message,
                "html": card_fragment(rendered.message, locale=locale),
                "size": body_size(rendered.message),
                "limit": MAX_BODY_BYTES,
            }
        )

    async def recent(request: Request) -> Response:
        cards = list(service.dispatcher.recent_cards) if service.dispatcher else []
        return _json(
            [
                {
                    "target": c.target,
                    "at": c.at,
                    "trace_id": c.trace_id,
                    "size": body_size(c.message),
                    "html": card_fragment(c.message),
                    "message": c.message,
                }
                for c in reversed(cards)
            ]
        )

    def _target(current: Generation, name: Any) -> Target:
        target = current.config.targets.get(name) if isinstance(name, str) else None
        if target is None:
            raise HTTPError(400, f"target: unknown target {name!r:.60}")
        return target

    auth = guarded(service)
    return [
        Route("/ui", answered(page), methods=["GET"], middleware=auth),
        Route("/ui/static/{name}", answered(static), methods=["GET"], middleware=auth),
        Route("/ui/api/options", answered(options), methods=["GET"], middleware=auth),
        Route("/ui/api/samples/{name}", answered(sample), methods=["GET"], middleware=auth),
        Route("/ui/api/template", answered(template), methods=["GET"], middleware=auth),
        Route("/ui/api/render", answered(render), methods=["POST"], middleware=auth),
        Route("/ui/api/recent", answered(recent), methods=["GET"], middleware=auth),
    ]


def _notification(payload: Any) -> Notification:
    """An Alertmanager payload, or a plain event ({title, text, …}) as /api/v1/notify takes."""
    try:
        if isinstance(payload, dict) and "alerts" not in payload and "title" in payload:
            return parse_event(payload)
        return parse_notification(payload)
    except PayloadError as exc:
        raise HTTPError(400, f"payload: {exc}") from None
