"""A Feishu-like Open API server for tests: tenant tokens, send, PATCH and reply of messages.

It follows the official pages it names, strictly:
https://open.feishu.cn/document/server-docs/authentication-management/access-token/tenant_access_token_internal
(a token lives `token_ttl`; asked again with less than `renew_window` left, a new one comes
back and the old one stays valid), https://open.feishu.cn/document/server-docs/im-v1/message/create
(content is a JSON *string*; cards ≤ 30 KB, 230025; uuid: one message an hour),
https://open.feishu.cn/document/server-docs/im-v1/message-card/patch (same app, update_multi,
14 days, 5 updates/s per message), https://open.feishu.cn/document/server-docs/im-v1/message/reply
and https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control (5/s per chat
or person, 50/s and 1000/min per app: HTTP 429 code 99991400 with x-ogw-ratelimit-* headers).
Where Feishu's answer is undocumented it picks the strictest plausible one and says so
(`# undocumented`). Time comes from `clock` (a FakeClock in tests), so expiry, the uuid hour,
the 14 days and the rate windows are all driven by the test, without sleeping.

``with FakeOpenAPI() as fake: fake.add_app("cli_a", "secret")``; point the client at
``fake.base_url``; inspect ``fake.messages``, ``fake.token_requests``, ``fake.refusals``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from tests.support.http_server import TrackedServer

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
MESSAGES_PATH = "/open-apis/im/v1/messages"
MAX_CARD_BYTES = 30_000  # "30 KB": the smaller reading, so our budget errs on the safe side
MAX_TEXT_BYTES = 150_000
UUID_WINDOW = 3600.0
UPDATE_WINDOW = 14 * 86400.0
MAX_UUID = 50
RECEIVE_IDS = {
    "chat_id": re.compile(r"oc_[A-Za-z0-9_-]+"),
    "open_id": re.compile(r"ou_[A-Za-z0-9_-]+"),
    "union_id": re.compile(r"on_[A-Za-z0-9_-]+"),
    "user_id": re.compile(r"[A-Za-z0-9_-]+"),
    "email": re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"),
}
MSG_TYPES = frozenset(
    {"text", "post", "image", "file", "audio", "media", "sticker", "interactive"}
    | {"share_chat", "share_user", "system"}
)
TOKEN_CODES = {"missing": 99991661, "not_t": 99991671, "invalid": 99991663}
ENDPOINTS = ("token", "send", "update", "reply")


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class _Window:
    """A sliding log: at most `limit` admissions in any `span` seconds."""

    def __init__(self, limit: int | None, span: float) -> None:
        self.limit, self.span, self.hits = limit, span, deque[float]()

    def wait(self, now: float) -> float:
        """0 when one more fits now, else the seconds until one does."""
        while self.hits and self.hits[0] <= now - self.span:
            self.hits.popleft()
        if not self.limit or len(self.hits) < self.limit:
            return 0.0
        return self.hits[-self.limit] + self.span - now


@dataclass
class Message:
    message_id: str
    app_id: str
    chat_id: str
    receive_id_type: str
    receive_id: str
    msg_type: str
    content: str  # as Feishu holds it: the JSON string, the latest version
    created: float  # clock seconds
    uuid: str | None = None
    parent_id: str | None = None
    recalled: bool = False
    deleted: bool = False
    updates: list[str] = field(default_factory=list)  # every PATCHed content, in order
    replies: list[str] = field(default_factory=list)  # message_ids of the replies
    update_window: _Window | None = None

    @property
    def body(self) -> Any:
        return json.loads(self.content)


class Refusal(NamedTuple):
    endpoint: str  # token, send, update, reply
    code: int | None  # None: the answer was not JSON
    http_status: int
    reason: str  # short label: bad_token, rate_limited, too_large, injected, ...
    detail: str = ""


class _Reject(Exception):
    def __init__(
        self,
        code: int,
        msg: str,
        reason: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.code, self.msg, self.reason, self.status = code, msg, reason, status
        self.headers = headers or {}


class _Fault(NamedTuple):
    http_status: int
    code: int | None
    msg: str
    endpoint: str | None


@dataclass
class _Token:
    value: str
    app_id: str
    expires_at: float


class FakeOpenAPI:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] | None = None,
        token_ttl: float = 7200.0,
        renew_window: float = 1800.0,
        per_target_second: int | None = 5,
        per_app_second: int | None = 50,
        per_app_minute: int | None = 1000,
        per_message_updates: int | None = 5,
        monthly_quota: int | None = None,
        chats: set[str] | None = None,  # the chats the bot is in; None: every chat
    ) -> None:
        self.host, self._want_port = host, port
        self.clock = clock or time.monotonic
        self.token_ttl, self.renew_window = token_ttl, renew_window
        self.per_target_second, self.per_message_updates = per_target_second, per_message_updates
        self.monthly_quota, self.quota_used = monthly_quota, 0
        self.chats = chats
        self.apps: dict[str, str] = {}
        self.tokens: dict[str, _Token] = {}
        self.messages: dict[str, Message] = {}
        self.refusals: list[Refusal] = []
        self.token_requests = 0
        self.requests = 0
        self.duplicates = 0  # sends answered from the uuid hour instead of posting
        self._app_windows: dict[str, tuple[_Window, _Window]] = {}
        self._app_limits = (per_app_second, per_app_minute)
        self._target_windows: dict[str, _Window] = {}
        self._uuids: dict[tuple[str, str], tuple[str, float]] = {}
        self._faults: deque[_Fault] = deque()
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> FakeOpenAPI:
        self._server = _Server((self.host, self._want_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = None

    def __enter__(self) -> FakeOpenAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeOpenAPI is not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    # -- what the test sets up or breaks --
    def add_app(self, app_id: str, app_secret: str) -> None:
        with self._lock:
            self.apps[app_id] = app_secret

    def fail_next(
        self,
        n: int,
        http_status: int = 500,
        code: int | None = None,
        msg: str = "",
        *,
        endpoint: str | None = None,
    ) -> None:
        """Answer the next n requests (to `endpoint`, or any) so; code None: a non-JSON body."""
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        with self._lock:
            self._faults.extend([_Fault(http_status, code, msg, endpoint)] * n)

    def expire_tokens(self, value: str | None = None) -> None:
        """Make one token (or every token) expired now, as if its two hours were up."""
        with self._lock:
            for token in self.tokens.values():
                if value is None or token.value == value:
                    token.expires_at = self.clock() - 1

    def recall(self, message_id: str) -> None:
        with self._lock:
            self.messages[message_id].recalled = True

    def delete(self, message_id: str) -> None:
        with self._lock:
            self.messages[message_id].deleted = True

    def age(self, message_id: str, seconds: float) -> None:
        """Pretend the message was sent `seconds` earlier."""
        with self._lock:
            self.messages[message_id].created -= seconds

    # -- inspection --
    def sent(self, chat_id: str | None = None) -> list[Message]:
        """Top-level messages (no replies), in order, of one chat or all."""
        with self._lock:
            return [
                m
                for m in self.messages.values()
                if m.parent_id is None and (chat_id is None or m.chat_id == chat_id)
            ]

    def refused(self, reason: str | None = None) -> list[Refusal]:
        with self._lock:
            return [r for r in self.refusals if reason is None or r.reason == reason]

    # -- request handling (handler threads) --
    def _handle(self, h: _Handler) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        route = _route(h.command, path)
        if route is None:
            return _answer(h, 404, b"404 page not found")
        with self._lock:
            status, payload, headers = self._respond(
                route, h.headers.get("Authorization"), query, raw
            )
        _answer(h, status, payload, headers)

    def _respond(
        self, route: tuple[str, str | None], auth: str | None, query: str, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        endpoint, message_id = route
        self.requests += 1
        if endpoint == "token":
            self.token_requests += 1
        fault = self._take_fault(endpoint)
        if fault is not None:
            self.refusals.append(Refusal(endpoint, fault.code, fault.http_status, "injected"))
            if fault.code is None:
                return fault.http_status, b"<html>injected failure</html>", {}
            return fault.http_status, {"code": fault.code, "msg": fault.msg or "injected"}, {}
        try:
            if endpoint == "token":
                return 200, self._token(_json(raw)), {}
            app_id = self._auth(auth)
            self._admit_app(app_id)
            data = self._im(endpoint, app_id, message_id, parse_qs(query), _json(raw))
        except _Reject as r:
            self.refusals.append(Refusal(endpoint, r.code, r.status, r.reason, r.msg))
            return r.status, {"code": r.code, "msg": r.msg, "data": {}}, r.headers
        self.quota_used += 1  # only successful IM calls count (auth calls never do)
        return 200, {"code": 0, "msg": "success", "data": data}, {}

    def _take_fault(self, endpoint: str) -> _Fault | None:
        for i, fault in enumerate(self._faults):
            if fault.endpoint is None or fault.endpoint == endpoint:
                del self._faults[i]
                return fault
        return None

    def _token(self, body: dict[str, Any]) -> dict[str, Any]:
        app_id, secret = body.get("app_id"), body.get("app_secret")
        if not isinstance(app_id, str) or not isinstance(secret, str):
            raise _Reject(10003, "invalid param", "bad_request")  # undocumented code
        if app_id not in self.apps:
            raise _Reject(10014, "app unauthorized", "bad_app")
        if not secrets.compare_digest(self.apps[app_id], secret):
            raise _Reject(10015, "app secret invalid", "bad_secret")
        now = self.clock()
        live = [t for t in self.tokens.values() if t.app_id == app_id and t.expires_at > now]
        newest = max(live, key=lambda t: t.expires_at, default=None)
        if newest is None or newest.expires_at - now < self.renew_window:
            newest = _Token("t-" + secrets.token_hex(20), app_id, now + self.token_ttl)
            self.tokens[newest.value] = newest
        # top level, no `data` (tenant_access_token_internal)
        return {
            "code": 0,
            "msg": "ok",
            "tenant_access_token": newest.value,
            "expire": int(newest.expires_at - now),
        }

    def _auth(self, header: str | None) -> str:
        scheme, _, value = (header or "").partition(" ")
        if scheme != "Bearer" or not value:
            raise _Reject(
                TOKEN_CODES["missing"], "Missing access token for authorization", "no_token"
            )
        if not value.startswith(("t-", "u-")):
            raise _Reject(TOKEN_CODES["not_t"], "token must start with t- or u-", "bad_token")
        token = self.tokens.get(value)
        if token is None or token.expires_at <= self.clock():
            msg = (
                "Invalid access token for authorization. Please make a request with token attached."
            )
            raise _Reject(TOKEN_CODES["invalid"], msg, "bad_token")
        return token.app_id

    def _admit_app(self, app_id: str) -> None:
        per_second, per_minute = self._app_limits
        windows = self._app_windows.setdefault(
            app_id, (_Window(per_second, 1.0), _Window(per_minute, 60.0))
        )
        now = self.clock()
        wait = max(w.wait(now) for w in windows)
        if wait > 0:
            headers = {
                "x-ogw-ratelimit-limit": str(per_second),
                "x-ogw-ratelimit-reset": str(math.ceil(wait)),
            }
            raise _Reject(99991400, "request trigger frequency limit", "rate_limited", 429, headers)
        if self.monthly_quota is not None and self.quota_used >= self.monthly_quota:
            raise _Reject(99991403, "The monthly API call quota has been exceeded", "quota", 429)
        for w in windows:
            w.hits.append(now)

    def _im(
        self,
        endpoint: str,
        app_id: str,
        message_id: str | None,
        query: dict[str, list[str]],
        body: dict[str, Any],
    ) -> dict[str, Any]:
        if endpoint == "send":
            id_type = (query.get("receive_id_type") or [""])[0]
            receive_id = body.get("receive_id")
            if id_type not in RECEIVE_IDS:
                raise _Reject(230001, f"invalid receive_id_type {id_type!r}", "bad_request")
            if not isinstance(receive_id, str) or not RECEIVE_IDS[id_type].fullmatch(receive_id):
                raise _Reject(
                    230034, "The receive_id is invalid for its receive_id_type", "bad_receiver"
                )
            if id_type == "chat_id" and self.chats is not None and receive_id not in self.chats:
                raise _Reject(230002, "Bot/User can NOT be out of the chat.", "not_in_chat")
            chat = receive_id if id_type == "chat_id" else _p2p_chat(id_type, receive_id)
            msg_type, content = _check_content(body)
            return self._create(app_id, chat, id_type, receive_id, msg_type, content, body, None)
        parent = self._existing(message_id)
        if endpoint == "reply":
            msg_type, content = _check_content(body)
            if not isinstance(body.get("reply_in_thread", False), bool):
                raise _Reject(230001, "reply_in_thread must be a boolean", "bad_request")
            return self._create(
                app_id,
                parent.chat_id,
                parent.receive_id_type,
                parent.receive_id,
                msg_type,
                content,
                body,
                parent,
            )
        return self._patch(app_id, parent, body)

    def _existing(self, message_id: str | None) -> Message:
        message = self.messages.get(message_id or "")
        if message is None:  # undocumented: the strictest plausible answer
            raise _Reject(230001, "invalid message_id", "no_message")
        if message.deleted:
            raise _Reject(230110, "Action unavailable as the message has been deleted.", "deleted")
        if message.recalled:
            raise _Reject(230011, "The message is recalled.", "recalled")
        return message

    def _create(
        self,
        app_id: str,
        chat: str,
        id_type: str,
        receive_id: str,
        msg_type: str,
        content: str,
        body: dict[str, Any],
        parent: Message | None,
    ) -> dict[str, Any]:
        uuid = body.get("uuid")
        if uuid is not None and (not isinstance(uuid, str) or len(uuid) > MAX_UUID):
            raise _Reject(
                230001, f"uuid must be a string of at most {MAX_UUID} characters", "bad_request"
            )
        now = self.clock()
        if uuid:
            seen = self._uuids.get((app_id, uuid))
            if seen is not None and now - seen[1] < UUID_WINDOW:
                self.duplicates += 1  # undocumented: the same message comes back, nothing is posted
                return _view(self.messages[seen[0]])
        window = self._target_windows.setdefault(chat, _Window(self.per_target_second, 1.0))
        if window.wait(now) > 0:
            raise _Reject(230020, "This operation triggers the frequency limit.", "rate_limited")
        window.hits.append(now)
        message = Message(
            "om_" + secrets.token_hex(16),
            app_id,
            chat,
            id_type,
            receive_id,
            msg_type,
            content,
            now,
            uuid or None,
            parent.message_id if parent else None,
        )
        self.messages[message.message_id] = message
        if parent is not None:
            parent.replies.append(message.message_id)
        if uuid:
            self._uuids[(app_id, uuid)] = (message.message_id, now)
        return _view(message)

    def _patch(self, app_id: str, message: Message, body: dict[str, Any]) -> dict[str, Any]:
        if message.app_id != app_id:  # undocumented: "same identity as the sender"
            raise _Reject(230027, "Lack of necessary permissions.", "other_sender")
        if message.msg_type != "interactive":
            raise _Reject(
                230001, "invalid request parameter, ext=the message is not a card", "not_card"
            )
        if self.clock() - message.created > UPDATE_WINDOW:
            msg = "Message can only be modified within 14 days after sending."
            raise _Reject(230031, msg, "too_old")
        content = _content_string(body)
        card = _check_card(content)
        if not (_shared(message.body) and _shared(card)):  # undocumented code
            msg = "invalid request parameter, ext=only shared cards can be updated"
            msg += " (config.update_multi true before and after)"
            raise _Reject(230001, msg, "not_shared")
        if message.update_window is None:
            message.update_window = _Window(self.per_message_updates, 1.0)
        now = self.clock()
        if message.update_window.wait(now) > 0:
            raise _Reject(230020, "This operation triggers the frequency limit.", "rate_limited")
        message.update_window.hits.append(now)
        message.content = content
        message.updates.append(content)
        return {}


def _route(method: str, path: str) -> tuple[str, str | None] | None:
    if method == "POST" and path == TOKEN_PATH:
        return "token", None
    if method == "POST" and path == MESSAGES_PATH:
        return "send", None
    rest = path.removeprefix(MESSAGES_PATH + "/")
    if rest == path or not rest:
        return None
    message_id, _, tail = rest.partition("/")
    if method == "PATCH" and not tail:
        return "update", message_id
    if method == "POST" and tail == "reply":
        return "reply", message_id
    return None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise _Reject(230001, "the request body is not a JSON object", "bad_request")
    return body


def _content_string(body: dict[str, Any]) -> str:
    content = body.get("content")
    if not isinstance(content, str):
        # the doc: content is a JSON-serialised string, never an object
        raise _Reject(
            230001, "invalid request parameter, ext=content must be a string", "content_not_string"
        )
    return content


def _check_content(body: dict[str, Any]) -> tuple[str, str]:
    msg_type = body.get("msg_type")
    if not isinstance(msg_type, str) or msg_type not in MSG_TYPES:
        raise _Reject(
            230001, f"invalid request parameter, ext=msg_type {msg_type!r}", "bad_request"
        )
    content = _content_string(body)
    if msg_type == "interactive":
        _check_card(content)
        return msg_type, content
    limit = MAX_CARD_BYTES if msg_type == "post" else MAX_TEXT_BYTES
    if len(content.encode()) > limit:
        raise _Reject(230025, "The length of the message content reaches its limit.", "too_large")
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or (
        msg_type == "text" and not isinstance(parsed.get("text"), str)
    ):
        raise _Reject(
            230001, f"invalid request parameter, ext=bad {msg_type} content", "bad_content"
        )
    return msg_type, content


def _check_card(content: str) -> dict[str, Any]:
    if len(content.encode()) > MAX_CARD_BYTES:
        raise _Reject(230025, "The length of the message content reaches its limit.", "too_large")
    try:
        card = json.loads(content)
    except ValueError:
        card = None
    raw_card = isinstance(card, dict) and bool(
        {"schema", "config", "header", "body", "elements"} & set(card)
    )
    reference = (
        isinstance(card, dict)
        and card.get("type") in ("template", "card")
        and isinstance(card.get("data"), dict)
    )
    if not isinstance(card, dict) or not (raw_card or reference):
        msg = "Failed to create card content, ext=ErrCode: 200621; ErrMsg: parse card json err"
        raise _Reject(230099, msg, "bad_card")
    return card


def _shared(card: Any) -> bool:
    if isinstance(card, dict) and card.get("type") in ("template", "card"):
        return True  # set inside the template or card entity: not visible here
    return isinstance(card, dict) and (card.get("config") or {}).get("update_multi") is True


def _p2p_chat(id_type: str, receive_id: str) -> str:
    return "oc_p2p_" + hashlib.sha1(f"{id_type}:{receive_id}".encode()).hexdigest()[:16]


def _view(m: Message) -> dict[str, Any]:
    ms = str(int(time.time() * 1000))
    return {
        "message_id": m.message_id,
        "root_id": m.parent_id or "",
        "parent_id": m.parent_id or "",
        "msg_type": m.msg_type,
        "create_time": ms,
        "update_time": ms,
        "deleted": False,
        "updated": False,
        "chat_id": m.chat_id,
        "sender": {"id": m.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": "fake"},
        "body": {"content": m.content},
        "mentions": [],
    }


def _answer(h: _Handler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    is_json = not isinstance(payload, bytes)
    data = json.dumps(payload).encode() if is_json else payload
    h.send_response(status)
    h.send_header("Content-Type", "application/json; charset=utf-8" if is_json else "text/html")
    h.send_header("Content-Length", str(len(data)))
    h.send_header("X-Tt-Logid", secrets.token_hex(12))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real thing behind a pooled client
    disable_nagle_algorithm = True
    timeout = 30
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(TrackedServer):
    def __init__(self, address: tuple[str, int], fake: FakeOpenAPI) -> None:
        self.fake = fake
        super().__init__(address, _Handler)
