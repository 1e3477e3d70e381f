"""A Feishu-like custom-bot webhook server for tests and benchmarks.

It behaves as /work/shared/feishu-api.md describes: HTTP 200 with a non-zero
`code` for refusals, signature and keyword checks, the per-bot rate limit
(9499 "too many request" with HTTP 400), the body size limit, and strict card
JSON 2.0 validation. Where Feishu's real behaviour is undocumented (callback
buttons, @all in a group that forbids it) it is stricter than Feishu, so our
mistakes show up here first.

In-process: ``with FakeFeishu() as fake: url = fake.add_bot("tok", secret="s")``.
Standalone: ``python -m tests.support.feishu_fake --port 0 --bot TOKEN[:SECRET] [--fast]``
prints ``READY http://127.0.0.1:PORT``; ``GET /_fake/stats`` and
``GET /_fake/messages?token=T`` show what it got.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from tests.support.http_server import TrackedServer

HOOK_PREFIX = "/open-apis/bot/v2/hook/"
SUCCESS = {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
SIGN_WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Received:
    token: str
    body: dict[str, Any]
    at: float  # time.monotonic() when accepted
    size: int  # bytes on the wire
    content_type: str = ""


class Refusal(NamedTuple):
    token: str
    code: int | None  # Feishu body code; None when the answer was not JSON
    http_status: int | None  # None when the connection was closed without an answer
    reason: str  # short label: rate_limited, bad_signature, bad_card, injected, down, ...
    detail: str = ""  # what exactly was wrong (for assertion messages)


@dataclass
class Bot:
    token: str
    secret: str | None = None
    keyword: str | None = None
    per_second: int | None = 5  # None or 0: no limit
    per_minute: int | None = 100
    max_body: int = 20_480
    allow_at_all: bool = True
    hits: deque[float] = field(default_factory=deque)  # monotonic times of admitted requests

    def admit(self, now: float) -> bool:
        """Sliding windows of 1 s and 60 s over the requests admitted so far."""
        while self.hits and self.hits[0] <= now - 60:
            self.hits.popleft()
        if self.per_minute and len(self.hits) >= self.per_minute:
            return False
        if self.per_second:
            last_second = 0
            for t in reversed(self.hits):
                if t <= now - 1:
                    break
                last_second += 1
            if last_second >= self.per_second:
                return False
        self.hits.append(now)
        return True


class _Fault(NamedTuple):
    http_status: int
    code: int | None
    msg: str
    token: str | None  # None: any bot
    body: bytes | None = None  # a raw answer (an HTML page, say) instead of the JSON one


class _Reject(Exception):
    def __init__(self, code: int, msg: str, reason: str, detail: str = "", status: int = 200):
        super().__init__(detail or msg)
        self.code, self.msg, self.reason = code, msg, reason
        self.detail, self.status = detail, status


def _bad_card(detail: str) -> _Reject:
    return _Reject(9499, "Bad Request", "bad_card", detail)


# ---- card JSON 2.0: known attributes per component (feishu-api.md §6) ----------------------

TEMPLATES = frozenset(
    {"blue", "wathet", "turquoise", "green", "yellow", "orange", "red", "carmine", "violet"}
    | {"purple", "indigo", "grey", "default"}
)
TAG_COLOURS = frozenset(
    {"neutral", "blue", "turquoise", "lime", "orange", "violet", "indigo", "wathet", "green"}
    | {"yellow", "red", "purple", "carmine"}
)
BUTTON_TYPES = frozenset(
    {"default", "primary", "danger", "text", "primary_text", "danger_text", "primary_filled"}
    | {"danger_filled", "laser"}
)
_BASE = frozenset({"tag", "element_id", "margin"})
_TEXT = frozenset(
    {"tag", "content", "i18n_content", "text_size", "text_color", "text_align", "lines"}
)
_BEHAVIOR = frozenset({"type", "default_url", "pc_url", "ios_url", "android_url"})
_CONTAINER = frozenset(
    {"direction", "padding", "vertical_spacing", "horizontal_spacing", "vertical_align"}
    | {"horizontal_align", "elements"}
)
_V2 = {
    "card": frozenset({"schema", "config", "header", "body", "card_link"}),
    "config": frozenset(
        {"update_multi", "width_mode", "locales", "enable_forward", "summary", "style"}
        | {"streaming_mode", "streaming_config", "use_custom_translation"}
        | {"enable_forward_interaction"}
    ),
    "header": frozenset(
        {"title", "subtitle", "text_tag_list", "i18n_text_tag_list", "template", "icon"}
        | {"padding", "ui_style"}
    ),
    "body": _CONTAINER | {"element_id"},
    "card_link": frozenset({"url", "pc_url", "ios_url", "android_url"}),
    "text_tag": frozenset({"tag", "text", "color", "element_id"}),
    "icon": frozenset({"tag", "token", "color", "img_key", "size"}),
    "field": frozenset({"is_short", "text"}),
}
ELEMENTS: dict[str, frozenset[str]] = {
    "markdown": _BASE | {"content", "i18n_content", "text_size", "text_align", "icon"},
    "div": _BASE | {"text", "fields", "icon", "width"},
    "hr": _BASE,
    "column_set": _BASE
    | {"flex_mode", "background_style", "horizontal_spacing", "horizontal_align", "columns"}
    | {"action"},
    "column": _BASE | _CONTAINER | {"width", "weight", "background_style", "action"},
    "button": _BASE
    | {"text", "type", "size", "width", "behaviors", "icon", "disabled", "disabled_tips"}
    | {"confirm", "hover_tips"},
    "img": _BASE
    | {"img_key", "i18n_img_key", "alt", "title", "transparent", "preview", "corner_radius"}
    | {"scale_type", "size", "mode", "custom_width", "compact_width"},
    "person": _BASE | {"user_id", "size", "show_avatar", "show_name", "style"},
    "chart": _BASE | {"chart_spec", "aspect_ratio", "color_theme", "preview", "height"},
    "table": _BASE
    | {"page_size", "row_height", "row_max_height", "freeze_first_column", "header_style"}
    | {"columns", "rows"},
    "collapsible_panel": _BASE | _CONTAINER | {"expanded", "background_color", "header", "border"},
    "interactive_container": _BASE
    | _CONTAINER
    | {"width", "height", "background_style", "has_border", "border_color", "corner_radius"}
    | {"behaviors", "disabled", "disabled_tips", "confirm", "hover_tips"},
}
REMOVED_IN_V2 = {
    "note": "'note' was removed in 2.0: use div with text_size notation",
    "action": "'action' was removed in 2.0: put buttons directly in elements",
}
MAX_ELEMENTS = 200
MAX_NESTING = 5
_NESTING = frozenset({"column_set", "collapsible_panel", "interactive_container"})


def check_card_v2(card: dict[str, Any]) -> None:
    """Raise _Reject (9499 Bad Request) for anything Feishu's 2.0 parser would refuse."""
    if "wide_screen_mode" in (card.get("config") or {}):
        raise _bad_card("card.config.wide_screen_mode is not a 2.0 attribute")
    _attrs(card, _V2["card"], "card")
    for key in ("config", "card_link"):
        if key in card:
            _attrs(card[key], _V2[key], f"card.{key}")
    header = card.get("header")
    if header is not None:
        _check_header(header)
    body = card.get("body", {})
    _attrs(body, _V2["body"], "card.body")
    count = [0]
    _elements(body.get("elements", []), "card.body.elements", 0, count)
    if count[0] > MAX_ELEMENTS:
        raise _bad_card(f"{count[0]} elements, more than {MAX_ELEMENTS}")


def _check_header(header: Any) -> None:
    _attrs(header, _V2["header"], "card.header")
    if "template" in header and header["template"] not in TEMPLATES:
        raise _bad_card(f"card.header.template {header['template']!r} is not a known colour")
    for key in ("title", "subtitle"):
        if key in header:
            _text(header[key], f"card.header.{key}")
    tag_lists = [header.get("text_tag_list") or []]
    tag_lists += list((header.get("i18n_text_tag_list") or {}).values())
    for tags in tag_lists:  # more than 3 tags is fine: Feishu just hides the extras
        for i, tag in enumerate(_list(tags, "card.header.text_tag_list")):
            path = f"card.header.text_tag_list[{i}]"
            _attrs(tag, _V2["text_tag"], path)
            if tag.get("tag") != "text_tag" or tag.get("color", "blue") not in TAG_COLOURS:
                raise _bad_card(f"{path}: needs tag text_tag and a known color")
            _text(tag.get("text"), f"{path}.text")
    if "icon" in header:
        _attrs(header["icon"], _V2["icon"], "card.header.icon")


def _elements(items: Any, path: str, depth: int, count: list[int]) -> None:
    for i, el in enumerate(_list(items, path)):
        _element(el, f"{path}[{i}]", depth, count)


def _element(el: Any, path: str, depth: int, count: list[int]) -> None:
    if not isinstance(el, dict) or not isinstance(el.get("tag"), str):
        raise _bad_card(f"{path}: an element must be an object with a tag")
    tag = el["tag"]
    if tag in REMOVED_IN_V2:
        raise _bad_card(f"{path}: {REMOVED_IN_V2[tag]}")
    if tag not in ELEMENTS or tag == "column":
        raise _bad_card(f"{path}: unknown tag {tag!r}")
    if tag == "button" and "value" in el:
        raise _bad_card(f"{path}: 'value' is a callback payload; custom bots cannot call back")
    _attrs(el, ELEMENTS[tag], f"{path} ({tag})")
    count[0] += 1
    if "text" in el:
        _text(el["text"], f"{path}.text")
    if "behaviors" in el:
        _behaviors(el["behaviors"], f"{path}.behaviors")
    if tag == "button" and el.get("type", "default") not in BUTTON_TYPES:
        raise _bad_card(f"{path}: button type {el.get('type')!r} is not known")
    for j, fld in enumerate(_list(el.get("fields", []), f"{path}.fields")):
        _attrs(fld, _V2["field"], f"{path}.fields[{j}]")
        _text(fld.get("text"), f"{path}.fields[{j}].text")
    if tag in _NESTING:
        depth += 1
        if depth > MAX_NESTING:
            raise _bad_card(f"{path}: nested deeper than {MAX_NESTING} levels")
    if tag == "column_set":
        for j, col in enumerate(_list(el.get("columns", []), f"{path}.columns")):
            cpath = f"{path}.columns[{j}]"
            if not isinstance(col, dict) or col.get("tag") != "column":
                raise _bad_card(f"{cpath}: a column_set holds only columns")
            _attrs(col, ELEMENTS["column"], cpath)
            count[0] += 1
            _elements(col.get("elements", []), f"{cpath}.elements", depth, count)
    elif "elements" in el:
        _elements(el["elements"], f"{path}.elements", depth, count)


def _behaviors(items: Any, path: str) -> None:
    for i, b in enumerate(_list(items, path)):
        _attrs(b, _BEHAVIOR | {"value"}, f"{path}[{i}]")
        if b.get("type") != "open_url":
            raise _bad_card(f"{path}[{i}]: only open_url; custom bots cannot use callbacks")


def _text(obj: Any, path: str) -> None:
    _attrs(obj, _TEXT, path)
    if obj.get("tag", "plain_text") not in ("plain_text", "lark_md"):
        raise _bad_card(f"{path}: text tag must be plain_text or lark_md")


def _attrs(obj: Any, known: frozenset[str], path: str) -> None:
    if not isinstance(obj, dict):
        raise _bad_card(f"{path}: must be an object")
    unknown = sorted(set(obj) - known)
    if unknown:
        raise _bad_card(f"{path}: unknown attribute {', '.join(map(repr, unknown))}")


def _list(obj: Any, path: str) -> list[Any]:
    if not isinstance(obj, list):
        raise _bad_card(f"{path}: must be a list")
    return obj


# ---- whole messages ---------------------------------------------------------------------------

_TEXT_KEYS = frozenset({"text", "title", "content", "user_name"})
_AT_ALL = re.compile(r"<at\b[^>]*?\b(?:id|ids|user_id)\s*=\s*[\"']?(?:[^\"'>\s]*,)?all\b", re.I)


def expected_sign(timestamp: int, secret: str) -> str:
    """Feishu's algorithm (key = "ts\\nsecret", empty message), written independently of ours."""
    key = (str(timestamp) + "\n" + secret).encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def check_message(bot: Bot, body: dict[str, Any], now: float) -> None:
    """Raise _Reject with the code Feishu would answer; return when the message is accepted."""
    msg_type = body.get("msg_type")
    if not isinstance(msg_type, str) or not msg_type:
        raise _Reject(19002, "params error, msg_type need", "bad_format")
    if bot.secret:
        _check_sign(bot.secret, body, now)
    _check_shape(msg_type, body)
    if bot.keyword and not any(bot.keyword in t for t in _texts(body)):
        raise _Reject(19024, "Key Words Not Found", "keyword_missing")
    if not bot.allow_at_all and _mentions_all(body):
        msg = "this group is set to only admin can mention @All"
        raise _Reject(11235, msg, "mention_all_forbidden")


def _check_sign(secret: str, body: dict[str, Any], now: float) -> None:
    ts_raw, sign = body.get("timestamp"), body.get("sign")
    ts: int | None = None
    if isinstance(ts_raw, int) and not isinstance(ts_raw, bool):
        ts = ts_raw
    elif isinstance(ts_raw, str) and ts_raw.isdigit():
        ts = int(ts_raw)
    ok = (
        ts is not None
        and isinstance(sign, str)
        and abs(now - ts) <= SIGN_WINDOW_SECONDS
        and hmac.compare_digest(sign, expected_sign(ts, secret))
    )
    if not ok:
        msg = "sign match fail or timestamp is not within one hour from current time"
        raise _Reject(19021, msg, "bad_signature", f"timestamp={ts_raw!r}")


def _check_shape(msg_type: str, body: dict[str, Any]) -> None:
    if msg_type == "interactive":
        card = body.get("card")
        if not isinstance(card, dict):
            raise _Reject(19002, "params error, unknown card value", "bad_format", "needs card{}")
        if card.get("type") == "template":
            if not isinstance((card.get("data") or {}).get("template_id"), str):
                raise _Reject(19002, "params error, template_id need", "bad_format")
        elif card.get("schema") == "2.0":
            check_card_v2(card)
        elif "schema" in card:
            raise _bad_card(f"unknown card schema {card['schema']!r}")
        for node in _dicts(card):  # 1.0 too: a callback can never work from a custom bot
            if node.get("tag") == "button" and "value" in node:
                raise _bad_card("button 'value' is a callback payload")
        return
    content = body.get("content")
    needs = {"text": "text", "post": "post", "image": "image_key", "share_chat": "share_chat_id"}
    if msg_type not in needs:
        raise _Reject(19002, "params error, unknown msg_type", "bad_format", msg_type)
    if not isinstance(content, dict) or not content.get(needs[msg_type]):
        detail = f"{msg_type} needs content.{needs[msg_type]}"
        raise _Reject(19002, "incorrect input format", "bad_format", detail)
    if msg_type == "post":
        langs = content["post"]
        ok = isinstance(langs, dict) and all(
            isinstance(v, dict)
            and isinstance(v.get("content", []), list)
            and all(isinstance(p, list) for p in v.get("content", []))
            for v in langs.values()
        )
        if not ok:
            raise _Reject(19002, "incorrect input format", "bad_format", "post.<lang>.content")


def _texts(node: Any, key: str | None = None) -> Iterator[str]:
    """Text-like values only (text, title, content, ...): keywords in href/url do not count."""
    if isinstance(node, str):
        if key in _TEXT_KEYS:
            yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            if k in ("i18n_content", "i18n") and isinstance(v, dict):
                yield from (s for s in v.values() if isinstance(s, str))
            else:
                yield from _texts(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item, key)


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from _dicts(v)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict | list):
        for v in node.values() if isinstance(node, dict) else node:
            yield from _strings(v)


def _mentions_all(body: dict[str, Any]) -> bool:
    if any(d.get("tag") == "at" and d.get("user_id") == "all" for d in _dicts(body)):
        return True
    return any(_AT_ALL.search(s) for s in _strings(body))


# ---- the server -------------------------------------------------------------------------------


class FakeFeishu:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0) -> None:
        self.host, self._want_port, self.delay = host, port, delay
        self.received: list[Received] = []
        self.refusals: list[Refusal] = []
        self.requests = 0
        self._bots: dict[str, Bot] = {}
        self._cond = threading.Condition(threading.RLock())
        self._faults: deque[_Fault] = deque()
        self._fail_until = 0.0
        self._fail_for: _Fault | None = None
        self._down: str | None = None  # None, "503" or "close"
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> FakeFeishu:
        self._server = _Server((self.host, self._want_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in `delay`
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()  # joins the handler threads
        assert self._thread is not None
        self._thread.join()
        self._server = None

    def __enter__(self) -> FakeFeishu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeFeishu is not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- configuration --
    def add_bot(
        self,
        token: str,
        secret: str | None = None,
        keyword: str | None = None,
        per_second: int | None = 5,
        per_minute: int | None = 100,
        max_body: int = 20_480,
        allow_at_all: bool = True,
    ) -> str:
        with self._cond:
            self._bots[token] = Bot(
                token, secret, keyword, per_second, per_minute, max_body, allow_at_all
            )
        return self.url_for(token)

    def url_for(self, token: str) -> str:
        return f"{self.base_url}{HOOK_PREFIX}{token}"

    def fail_next(
        self,
        n: int,
        http_status: int = 500,
        code: int | None = None,
        msg: str = "",
        *,
        token: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next n requests (of `token`, or any) with this failure.

        With `body`, that is the answer, served as text/html (a proxy's error page)."""
        with self._cond:
            self._faults.extend([_Fault(http_status, code, msg, token, body)] * n)

    def fail_for(
        self, seconds: float, http_status: int = 500, code: int | None = None, msg: str = ""
    ) -> None:
        """Answer every request with this failure for the next `seconds`."""
        with self._cond:
            self._fail_for = _Fault(http_status, code, msg, None)
            self._fail_until = time.monotonic() + seconds

    def set_down(self, down: bool, *, close: bool = False) -> None:
        """Answer 503 (or, with close=True, drop the connection) until cleared."""
        with self._cond:
            self._down = ("close" if close else "503") if down else None

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def reset(self) -> None:
        with self._cond:
            self.received.clear()
            self.refusals.clear()
            self._faults.clear()
            for bot in self._bots.values():
                bot.hits.clear()

    # -- inspection --
    def messages(self, token: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r.body for r in self.received if r.token == token]

    def refused(self, reason: str | None = None, token: str | None = None) -> list[Refusal]:
        with self._cond:
            return [
                r
                for r in self.refusals
                if (reason is None or r.reason == reason) and (token is None or r.token == token)
            ]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        """Block until predicate() holds (checked on every request), or raise AssertionError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    name = what or getattr(predicate, "__name__", "condition")
                    raise AssertionError(f"timed out after {timeout}s waiting for {name}; {self}")
                self._cond.wait(left)

    def wait_count(self, token: str, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        self.wait_for(
            lambda: len(self.messages(token)) >= n, timeout, f"{n} messages to bot {token!r}"
        )
        return self.messages(token)

    async def wait_for_async(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        await asyncio.to_thread(self.wait_for, predicate, timeout, what)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "requests": self.requests,
                "received": dict(Counter(r.token for r in self.received)),
                "refusals": dict(Counter(r.reason for r in self.refusals)),
            }

    def __repr__(self) -> str:
        with self._cond:
            last = [tuple(r) for r in self.refusals[-5:]]
        return f"FakeFeishu({self.stats()}, last refusals={last})"

    # -- request handling (handler threads) --
    def _handle(self, h: _Handler) -> None:
        path, _, query = h.path.partition("?")
        if h.command == "GET" and path.startswith("/_fake/"):
            return self._inspect(h, path, query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        token = path[len(HOOK_PREFIX) :] if path.startswith(HOOK_PREFIX) else ""
        if h.command != "POST" or not token:
            return _reply(h, 404, b"404 page not found", "text/plain")
        if self.delay > 0:
            self._stopping.wait(self.delay)
        with self._cond:
            self.requests += 1
            down = self._down
            fault = self._take_fault(token) if down is None else None
            bot = self._bots.get(token)
            # injected failures and refusals before the limiter do not use up the bot's quota
            skip = down is not None or fault is not None or bot is None or len(raw) > bot.max_body
            admitted = skip or bot.admit(time.monotonic())
        if down == "close":
            h.close_connection = True
            return self._refuse(token, None, None, "down")
        if down == "503":
            self._refuse(token, None, 503, "down")
            return _reply(h, 503, b"Service Unavailable", "text/plain")
        if fault is not None:
            self._refuse(token, fault.code, fault.http_status, "injected", fault.msg)
            if fault.body is not None:
                return _reply(h, fault.http_status, fault.body, "text/html; charset=utf-8")
            if fault.code is None:
                return _reply(h, fault.http_status, b"injected failure", "text/plain")
            return _reply(h, fault.http_status, {"code": fault.code, "msg": fault.msg, "data": {}})
        try:
            if bot is None:
                msg = "param invalid: incoming webhook access token invalid"
                raise _Reject(19001, msg, "bad_token")
            if len(raw) > bot.max_body:
                msg = "The message exceeds the size limit of 30KB"
                raise _Reject(19036, msg, "too_large", f"{len(raw)} > {bot.max_body} bytes")
            if not admitted:
                raise _Reject(9499, "too many request", "rate_limited", status=400)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body = None
            if not isinstance(body, dict):
                raise _Reject(19002, "params error, msg_type need", "bad_format", "not JSON")
            check_message(bot, body, time.time())
        except _Reject as r:
            self._refuse(token, r.code, r.status, r.reason, r.detail or r.msg)
            return _reply(h, r.status, {"code": r.code, "msg": r.msg, "data": {}})
        content_type = h.headers.get("Content-Type", "")
        with self._cond:
            self.received.append(Received(token, body, time.monotonic(), len(raw), content_type))
            self._cond.notify_all()
        _reply(h, 200, SUCCESS)

    def _take_fault(self, token: str) -> _Fault | None:
        if self._fail_for is not None and time.monotonic() < self._fail_until:
            return self._fail_for
        for i, fault in enumerate(self._faults):
            if fault.token is None or fault.token == token:
                del self._faults[i]
                return fault
        return None

    def _refuse(
        self, token: str, code: int | None, status: int | None, reason: str, detail: str = ""
    ) -> None:
        with self._cond:
            self.refusals.append(Refusal(token, code, status, reason, detail))
            self._cond.notify_all()

    def _inspect(self, h: _Handler, path: str, query: str) -> None:
        if path == "/_fake/stats":
            return _reply(h, 200, self.stats())
        if path == "/_fake/messages":
            token = parse_qs(query).get("token", [""])[0]
            return _reply(h, 200, {"messages": self.messages(token)})
        return _reply(h, 404, b"404 page not found", "text/plain")


def _reply(h: _Handler, status: int, payload: Any, content_type="application/json") -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    h.send_response(status)
    h.send_header(
        "Content-Type", content_type + ("; charset=utf-8" if "json" in content_type else "")
    )
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real thing behind a pooled client
    disable_nagle_algorithm = True  # headers and body go in two writes: avoid 40 ms stalls
    timeout = 30  # an idle keep-alive connection gives up eventually
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(TrackedServer):
    def __init__(self, address: tuple[str, int], fake: FakeFeishu) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.feishu_fake", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bot", action="append", default=[], metavar="TOKEN[:SECRET]")
    p.add_argument("--keyword", default=None)
    p.add_argument("--max-body", type=int, default=20_480)
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--fast", action="store_true", help="no rate limits")
    args = p.parse_args(argv)
    fake = FakeFeishu(args.host, args.port, args.delay).start()
    for spec in args.bot or ["test"]:
        token, _, secret = spec.partition(":")
        limits = (None, None) if args.fast else (5, 100)
        fake.add_bot(token, secret or None, args.keyword, *limits, max_body=args.max_body)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"READY {fake.base_url}", flush=True)
    stop.wait()
    fake.stop()
    print(json.dumps(fake.stats()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
