"""The HTTP edge: errors as statuses, the one auth check, bounded JSON bodies, traces.

Toward Alertmanager: 4xx only for input that will never succeed (it gives
up on 4xx), 5xx for our own trouble (it retries those). Error bodies are
`{"error": "<what is wrong, naming the field>"}`.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amfeishu.config.types import Auth
from amfeishu.logs import bind_request_id, new_trace, unbind_request_id
from amfeishu.metrics import Metrics

log = logging.getLogger("amfeishu.receiver")


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """JSONResponse's body (compact, UTF-8), encoded by msgspec: a few µs less per answer."""
    return Response(msgspec.json.encode(content), status, headers, "application/json")


class Endpoint:
    """An ASGI endpoint that Starlette's Route calls as it is: a function would be handed
    a Request, through request_response and its exception wrapper (µs on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def credentials_ok(auth: Auth, header: str | None) -> bool:
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


def challenge(auth: Auth) -> str:
    """The WWW-Authenticate of a 401: bearer when a token is set, else basic (a browser asks)."""
    scheme = "Bearer" if auth.bearer_token is not None else "Basic"
    return f'{scheme} realm="amfeishu"'


class AuthMiddleware:
    """Guards a route: wrong or missing credentials get a 401 with the challenge.

    `auth` is called per request, so a reload that changes credentials applies at once.
    """

    def __init__(self, app: ASGIApp, auth: Callable[[], Auth]) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = self.auth()
        header = _header(scope, b"authorization")
        if scope["type"] != "http" or credentials_ok(auth, header):
            await self.app(scope, receive, send)
            return
        log.warning("%s %s → 401: missing or wrong credentials", scope["method"], scope["path"])
        headers = {"WWW-Authenticate": challenge(auth)}
        await error_response(401, "missing or wrong credentials", headers)(scope, receive, send)


class Traced:
    """Continues the request's trace, counts it by endpoint and status, and turns
    HTTPError (and any crash) into the JSON error answer."""

    def __init__(self, app: ASGIApp, endpoint: str, metrics: Callable[[], Metrics]) -> None:
        self.app = app
        self.endpoint = endpoint
        self.metrics = metrics

    def _count(self, status: int) -> None:
        metrics = self.metrics()
        metrics.child(metrics.requests, self.endpoint, str(status)).inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = new_trace(_header(scope, b"traceparent"))
        traceparent = trace.traceparent
        scope.setdefault("state", {})["traceparent"] = traceparent  # request.state
        status = 500
        started = False

        async def send_traced(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"traceparent", traceparent.encode()))
                message = {**message, "headers": headers}
            await send(message)

        token = bind_request_id(trace.short)
        try:
            await self.app(scope, receive, send_traced)
        except HTTPError as exc:
            level = logging.WARNING if exc.status < 500 else logging.ERROR
            log.log(
                level, "%s %s → %d: %s", scope["method"], scope["path"], exc.status, exc.message
            )
            await self._answer(scope, receive, send_traced, exc, started)
        except Exception:  # our bug: a 5xx, so Alertmanager retries rather than drops
            log.exception("%s %s failed", scope["method"], scope["path"])
            error = HTTPError(500, "internal error; see the amfeishu log")
            await self._answer(scope, receive, send_traced, error, started)
        finally:
            self._count(status)
            unbind_request_id(token)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, error: HTTPError, started: bool
    ) -> None:
        if not started:  # else too late to change the answer; the log has it
            await error_response(error.status, error.message)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, or HTTPError 413/400; never reads past the limit."""
    return decode_json(await read_body(request.scope, request.receive, limit))


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body's bytes, or HTTPError 413 (over the limit) / 400 (empty)."""
    raw = await read_bounded(scope, receive, limit)
    if not raw.strip():
        raise HTTPError(400, "body is empty; expected an Alertmanager webhook payload (JSON)")
    return raw


async def read_bounded(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body's bytes (maybe none), or HTTPError 413; never reads past the limit.

    Reads the ASGI messages itself: Request.stream() costs a few µs more per request.
    """
    declared = _header(scope, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"body is {declared} bytes, more than the limit of {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body is more than the limit of {limit} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    """UTF-8 JSON → Python values, or HTTPError 400 saying what is wrong and where."""
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
