"""Feishu card callbacks as Feishu sends them, and an Alertmanager-like silences API.

A click is a `card.action.trigger` event (schema 2.0), encrypted with the app's
Encrypt Key and signed over the exact bytes sent, as
https://open.feishu.cn/document/feishu-cards/card-callback-communication and
https://open.feishu.cn/document/event-subscription-guide/callback-subscription/receive-and-handle-callbacks
describe it; amfeishu/feishu/crypto.py does the AES and the SHA-256.

FakeAlertmanager answers the three calls the card buttons make (POST /api/v2/silences,
GET /api/v2/silences, DELETE /api/v2/silence/{id}) like Alertmanager's API v2, and can
be made slow (`delay`) to test the 3-second answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from amfeishu.feishu import crypto


def callback_values(card: Any) -> list[dict[str, Any]]:
    """Every callback button value of a card, in order."""
    return list(_values(card))


def _values(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "callback" and isinstance(node.get("value"), dict):
            yield node["value"]
        for child in node.values():
            yield from _values(child)
    elif isinstance(node, list):
        for child in node:
            yield from _values(child)


def button(card: Any, action: str, **fields: str) -> dict[str, Any]:
    """The value of the card's button for `action` (and, say, duration="1h")."""
    for value in callback_values(card):
        if value.get("action") == action and all(value.get(k) == v for k, v in fields.items()):
            return value
    raise AssertionError(f"no {action} {fields} button on the card: {callback_values(card)}")


def click(
    app_id: str,
    token: str,
    value: dict[str, Any],
    *,
    event_id: str | None = None,
    open_id: str = "ou_alice",
    message_id: str = "om_unknown",
    chat_id: str = "oc_alerts",
    create_time: float | None = None,
) -> dict[str, Any]:
    """A card.action.trigger event: one person clicked one button."""
    created = time.time() if create_time is None else create_time
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or uuid.uuid4().hex,
            "token": token,
            "create_time": str(int(created * 1_000_000)),  # microseconds
            "event_type": "card.action.trigger",
            "tenant_key": "tenant-test",
            "app_id": app_id,
        },
        "event": {
            "operator": {"tenant_key": "tenant-test", "open_id": open_id, "union_id": "on_x"},
            "token": "c-delayed-update-token",
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }


def url_verification(token: str, challenge: str = "challenge-0123") -> dict[str, Any]:
    return {"challenge": challenge, "token": token, "type": "url_verification"}


def signed(
    body: dict[str, Any] | bytes,
    encrypt_key: str | None,
    *,
    timestamp: float | None = None,
    nonce: str = "nonce-0123",
    sign_with: str | None = None,
    encrypt: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers Feishu sends: encrypted and signed when there is a key.

    `sign_with` signs with another key (a forgery); bytes are sent as they are.
    """
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if encrypt_key is None:
        return raw, headers
    if encrypt and not isinstance(body, bytes):
        raw = json.dumps({"encrypt": crypto.encrypt(raw, encrypt_key)}).encode()
    stamp = str(int(time.time() if timestamp is None else timestamp))
    headers["X-Lark-Request-Timestamp"] = stamp
    headers["X-Lark-Request-Nonce"] = nonce
    headers["X-Lark-Signature"] = crypto.signature(stamp, nonce, sign_with or encrypt_key, raw)
    return raw, headers


class FakeAlertmanager:
    """Alertmanager's silences API on 127.0.0.1; `delay` holds every answer that long, and
    with `acts` False it then answers 503 without doing anything (a hung Alertmanager)."""

    def __init__(self) -> None:
        self.silences: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.delay = 0.0
        self.acts = True
        self.release = threading.Event()  # set at stop: a held answer goes out at once
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _AMHandler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.silences.values() if s["status"]["state"] == "active"]

    def start(self) -> FakeAlertmanager:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> FakeAlertmanager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, method: str, path: str, body: bytes, auth: str = "") -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path, auth))
        if self.delay:
            self.release.wait(self.delay)  # a slow Alertmanager (bounded by `delay`)
        if not self.acts:
            return 503, "overloaded"
        with self._lock:
            if method == "POST" and path == "/api/v2/silences":
                data = json.loads(body)
                if not data.get("matchers") or not data.get("createdBy"):
                    return 400, "matchers and createdBy are required"
                silence_id = str(uuid.uuid4())
                self.silences[silence_id] = {
                    **data,
                    "id": silence_id,
                    "status": {"state": "active"},
                }
                return 200, {"silenceID": silence_id}
            if method == "GET" and path == "/api/v2/silences":
                return 200, list(self.silences.values())
            if method == "DELETE" and path.startswith("/api/v2/silence/"):
                silence = self.silences.get(path.rsplit("/", 1)[1])
                if silence is None:
                    return 404, "silence not found"
                silence["status"] = {"state": "expired"}
                return 200, None
        return 404, "not found"


class _AMHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeAlertmanager = self.server.fake  # type: ignore[attr-defined]
        auth = self.headers.get("Authorization") or ""
        status, payload = fake.answer(self.command, self.path, body, auth)
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting
            pass

    do_GET = do_POST = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass
