"""A Feishu/Lark self-built app: its tenant token, and send, update and reply of messages.

Facts: the token https://open.feishu.cn/document/server-docs/authentication-management/access-token/tenant_access_token_internal
and its codes https://open.feishu.cn/document/server-docs/api-call-guide/generic-error-code;
send https://open.feishu.cn/document/server-docs/im-v1/message/create; update
https://open.feishu.cn/document/server-docs/im-v1/message-card/patch; reply
https://open.feishu.cn/document/server-docs/im-v1/message/reply; limits
https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control; the free tier's
monthly quota https://open.feishu.cn/document/platform-notices/platform-updates-/custom-app-api-call-limit.

Like feishu/webhook.py it answers with an Answer and never sleeps or backs off: the
caller owns retries. The one retry made here is for a token refused as expired or
invalid, which a fresh token fixes at once. The quota line is logged once per client.
The app secret and tokens never reach an Answer or a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from amfeishu.feishu.answers import Answer, Outcome, Reason, classify

log = logging.getLogger("amfeishu.delivery")

DOMAINS = {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
MESSAGES_PATH = "/open-apis/im/v1/messages"
RECEIVE_ID_TYPES = ("chat_id", "open_id", "user_id", "union_id", "email")
MAX_UUID = 50  # message/create: "uuid ≤ 50 characters"
MAX_CARD_BYTES = 30_000  # "card ≤ 30 KB" (230025), read as the smaller figure
REFRESH_MARGIN = 300.0  # renew a token with less than this left (Feishu renews at < 30 min)
CONTENT_TYPE = "application/json; charset=utf-8"

TOKEN_REFUSED = frozenset({99991663, 99991664, 99991665})  # a fresh token fixes these
QUOTA_EXHAUSTED = 99991403
QUOTA_MEANING = (
    "Feishu answered 99991403: the tenant's monthly Open API quota is used up (Feishu's basic "
    "free edition allows 10,000 calls a month across all self-built apps, reset on the 1st). "
    "App messages fail until then and are retried, then dead-lettered; custom-bot webhooks "
    "do not count against the quota"
)
_CREDENTIALS = "check the app's app_id and app_secret, and that the app is enabled"
_NOT_ALLOWED = "the app may not post there: see Feishu's message for why"


def _rows(
    codes: tuple[int, ...], outcome: Outcome, reason: Reason, fix: str | None = None
) -> dict[int, tuple[Outcome, Reason, str | None]]:
    return dict.fromkeys(codes, (outcome, reason, fix))


# Feishu's app codes -> (outcome, reason, fix).
_RETRY, _PERMANENT = Outcome.RETRY, Outcome.PERMANENT
_APP_CODES = {
    # 230049 "being sent": the same uuid, again later
    **_rows(
        (230020, 11232, 11233, 11247, 99991400, 1000004, 1000005, 230049),
        _RETRY,
        Reason.RATE_LIMITED,
    ),
    **_rows((1500,), _RETRY, Reason.HTTP_5XX),
    **_rows((QUOTA_EXHAUSTED,), _RETRY, Reason.QUOTA_EXHAUSTED, QUOTA_MEANING),
    **_rows(
        (10003, 10014, 10015, 20002, 99991661, 99991671, *TOKEN_REFUSED),
        _PERMANENT,
        Reason.BAD_APP,
        _CREDENTIALS,
    ),
    **_rows((99991662, 99991673), _PERMANENT, Reason.BAD_APP, "the app is disabled in this tenant"),
    **_rows(
        (99991672,),
        _PERMANENT,
        Reason.BAD_APP,
        "grant the scope Feishu names and publish a version",
    ),
    **_rows(
        (99991401,), _PERMANENT, Reason.IP_NOT_ALLOWED, "add this host to the app's IP allowlist"
    ),
    **_rows((230002,), _PERMANENT, Reason.NOT_ALLOWED, "add the app's bot to the chat"),
    **_rows((230006,), _PERMANENT, Reason.BAD_APP, "enable the app's bot, publish a version"),
    **_rows(
        (230013,), _PERMANENT, Reason.NOT_ALLOWED, "the user is outside the app's availability"
    ),
    **_rows(
        (230027, 230035, 230053, 230029, 230038, 230054, 230075),
        _PERMANENT,
        Reason.NOT_ALLOWED,
        _NOT_ALLOWED,
    ),
    **_rows(
        (230034,),
        _PERMANENT,
        Reason.BAD_RECEIVER,
        "the receive_id does not fit its receive_id_type",
    ),
    **_rows((232009,), _PERMANENT, Reason.BAD_RECEIVER, "the chat was dissolved"),
    **_rows((230011, 230110, 230031), _PERMANENT, Reason.MESSAGE_GONE, "the message is gone"),
    **_rows((230071,), _PERMANENT, Reason.BAD_CARD),
    **_rows((230001, 230099, 230022, 230028), Outcome.BAD_CARD, Reason.BAD_CARD),
    **_rows((230025,), Outcome.TOO_LARGE, Reason.TOO_LARGE),
}
# What says "this card can no longer be updated (or replied to): send a new one".
# PATCH answers 230001 for an unknown message and for a card without update_multi.
_GONE = {
    "update": frozenset({230011, 230110, 230031, 230001}),
    "reply": frozenset({230011, 230110}),
}
_GONE_FIX = (
    "this card can no longer be updated (recalled, deleted, older than 14 days or not shared)"
)
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOKEN_LIKE = re.compile(r"\b[tu]-[A-Za-z0-9_.-]{16,}")


def validate_domain(domain: str) -> str | None:
    """None when usable, else the problem: 'feishu', 'lark' or an http(s)://host URL."""
    if domain in DOMAINS:
        return None
    # the value is never echoed: a secret pasted into the wrong key must not reach a log
    try:
        parts = urlsplit(domain)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be 'feishu', 'lark' or an http(s)://host URL"
    if parts.username or parts.password:
        return "must not carry a user or password"
    if parts.path.rstrip("/") not in ("", "/open-apis") or parts.query or parts.fragment:
        return "must be the host alone, like https://open.feishu.cn"
    return None


def base_url(domain: str) -> str:
    problem = validate_domain(domain)
    if problem:
        raise ValueError(f"domain {problem}")
    if domain in DOMAINS:
        return DOMAINS[domain]
    parts = urlsplit(domain)
    return f"{parts.scheme}://{parts.netloc}"


def content_string(content: Mapping[str, Any]) -> str:
    """The `content` field as Feishu wants it: a JSON string, not an object."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class AppResult:
    answer: Answer
    message_id: str | None = None  # of the message sent or replied
    gone: bool = False  # the card cannot be updated (or replied to) any more: send a new one

    @property
    def ok(self) -> bool:
        return self.answer.ok


class _NoToken(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float


class FeishuApp:
    """One self-built app: a cached tenant token and the IM calls made with it."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        domain: str = "feishu",
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = REFRESH_MARGIN,
        on_token_fetch: Callable[[bool], None] | None = None,
    ) -> None:
        self.app_id = app_id
        self.base_url = base_url(domain)
        self.token_fetches = 0  # token requests made, successful or not
        self.token_failures = 0
        self._secret = app_secret
        self._timeout = timeout
        self._clock = clock
        self._margin = refresh_margin
        self._on_token_fetch = on_token_fetch
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )
        self._cached: _Token | None = None
        self._inflight: asyncio.Task[str] | None = None
        self._seen_tokens: deque[str] = deque(maxlen=4)  # to scrub from messages
        self._quota_explained = False

    async def send(
        self,
        receive_id_type: str,
        receive_id: str,
        msg_type: str,
        content: Mapping[str, Any],
        uuid: str | None = None,
    ) -> AppResult:
        if receive_id_type not in RECEIVE_ID_TYPES:
            text = f"receive_id_type must be one of {', '.join(RECEIVE_ID_TYPES)}"
            return AppResult(Answer(Outcome.PERMANENT, None, None, text, Reason.BAD_URL))
        if problem := _uuid_problem(uuid):
            return AppResult(Answer(Outcome.PERMANENT, None, None, problem, Reason.BAD_CARD))
        body = {"receive_id": receive_id, "msg_type": msg_type, "content": content_string(content)}
        if uuid:
            body["uuid"] = uuid
        params = {"receive_id_type": receive_id_type}
        return await self._call("send", "POST", MESSAGES_PATH, body, params)

    async def update(self, message_id: str, card: Mapping[str, Any]) -> AppResult:
        """PATCH a shared card; `gone` says to send a new card instead."""
        if not _MESSAGE_ID.fullmatch(message_id):
            return _bad_message_id(message_id)
        if not _shared(card):
            text = "the new card lacks config.update_multi: true, so Feishu cannot update in place"
            return AppResult(Answer(Outcome.BAD_CARD, None, None, text, Reason.BAD_CARD))
        path = f"{MESSAGES_PATH}/{quote(message_id)}"
        return await self._call("update", "PATCH", path, {"content": content_string(card)})

    async def reply(
        self,
        message_id: str,
        msg_type: str,
        content: Mapping[str, Any],
        uuid: str | None = None,
        *,
        in_thread: bool = False,
    ) -> AppResult:
        if not _MESSAGE_ID.fullmatch(message_id):
            return _bad_message_id(message_id)
        if problem := _uuid_problem(uuid):
            return AppResult(Answer(Outcome.PERMANENT, None, None, problem, Reason.BAD_CARD))
        body: dict[str, Any] = {"msg_type": msg_type, "content": content_string(content)}
        if uuid:
            body["uuid"] = uuid
        if in_thread:
            body["reply_in_thread"] = True
        return await self._call("reply", "POST", f"{MESSAGES_PATH}/{quote(message_id)}/reply", body)

    async def aclose(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
        await self._http.aclose()

    # -- one call, with one retry on a refused token --
    async def _call(
        self,
        kind: str,
        method: str,
        path: str,
        body: Mapping[str, Any],
        params: Mapping[str, str] | None = None,
    ) -> AppResult:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        used: str | None = None
        for attempt in range(2):
            try:
                used = await self._token(stale=used)
            except _NoToken as e:
                return AppResult(e.answer)
            headers = {"Authorization": f"Bearer {used}", "Content-Type": CONTENT_TYPE}
            result = await self._request(kind, method, path, content, headers, params)
            if result.answer.code not in TOKEN_REFUSED:
                return result
            if attempt == 0:
                log.info(
                    "feishu app %s: token refused (%s), fetching a new one",
                    self.app_id,
                    result.answer.code,
                )
        text = f"{result.answer.message} (twice, with a fresh token)"
        return AppResult(dataclasses.replace(result.answer, message=text))

    async def _request(
        self,
        kind: str,
        method: str,
        path: str,
        content: bytes,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
    ) -> AppResult:
        try:
            resp = await self._http.request(
                method, self.base_url + path, content=content, headers=headers, params=params
            )
        except httpx.HTTPError as e:
            return AppResult(self._network_answer(e))
        answer, gone = self._classify(kind, resp)
        return AppResult(answer, _message_id(resp.content) if answer.ok else None, gone)

    def _classify(self, kind: str, resp: httpx.Response) -> tuple[Answer, bool]:
        """Feishu's answer, and whether it says the message is gone."""
        answer, gone = classify_app(kind, resp.status_code, resp.content, resp.headers)
        if answer.code == QUOTA_EXHAUSTED and not self._quota_explained:
            self._quota_explained = True
            log.warning("feishu app %s: %s", self.app_id, QUOTA_MEANING)
        return dataclasses.replace(answer, message=self._scrub(answer.message)), gone

    # -- the tenant token: cached, renewed early, one request at a time --
    async def _token(self, stale: str | None = None) -> str:
        cached = self._cached
        if cached is not None and cached.value != stale and self._clock() < cached.refresh_at:
            return cached.value
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch_token())
            self._inflight.add_done_callback(self._fetched)
        # shield: a caller that gives up must not cancel the fetch the others wait on
        return await asyncio.shield(self._inflight)

    def _fetched(self, task: asyncio.Task[str]) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not reported twice

    async def _fetch_token(self) -> str:
        self.token_fetches += 1
        try:
            token = await self._token_request()
        except _NoToken:
            self.token_failures += 1
            self._cached = None
            if self._on_token_fetch:
                self._on_token_fetch(False)
            raise
        if self._on_token_fetch:
            self._on_token_fetch(True)
        return token

    async def _token_request(self) -> str:
        body = json.dumps({"app_id": self.app_id, "app_secret": self._secret}).encode()
        try:
            resp = await self._http.post(
                self.base_url + TOKEN_PATH, content=body, headers={"Content-Type": CONTENT_TYPE}
            )
        except httpx.HTTPError as e:
            raise _NoToken(self._network_answer(e, "fetching the tenant token")) from None
        answer, _ = self._classify("token", resp)
        payload = _object(resp.content) if answer.ok else {}
        value, expire = payload.get("tenant_access_token"), payload.get("expire")
        if not answer.ok:
            text = f"fetching the tenant token: {answer.message}"
            raise _NoToken(dataclasses.replace(answer, message=text))
        if (
            not isinstance(value, str)
            or not value
            or not isinstance(expire, int)
            or isinstance(expire, bool)
        ):
            text = "fetching the tenant token: the answer has no tenant_access_token or expire"
            raise _NoToken(Answer(Outcome.RETRY, 0, resp.status_code, text, Reason.NO_CODE))
        self._seen_tokens.append(value)
        now = self._clock()
        # renew `margin` early, or halfway through a lifetime shorter than the margin
        self._cached = _Token(value, now + max(expire - self._margin, expire / 2))
        log.debug("feishu app %s: new tenant token, expires in %ss", self.app_id, expire)
        return value

    def _network_answer(self, e: httpx.HTTPError, doing: str = "") -> Answer:
        prefix = f"{doing}: " if doing else ""
        if isinstance(e, httpx.TimeoutException):
            text = f"{prefix}timed out after {self._timeout:g}s ({type(e).__name__})"
            return Answer(Outcome.RETRY, None, None, text, Reason.TIMEOUT)
        text = f"{prefix}network error ({type(e).__name__}): {self._scrub(str(e))}".rstrip(": ")
        if isinstance(e, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return Answer(
                Outcome.PERMANENT, None, None, text, Reason.BAD_URL, "check the app's domain"
            )
        return Answer(Outcome.RETRY, None, None, text, Reason.NETWORK)

    def _scrub(self, text: str) -> str:
        for needle in (self._secret, *self._seen_tokens):
            if needle and len(needle) >= 4:
                text = text.replace(needle, "<redacted>")
        return _TOKEN_LIKE.sub("<redacted>", text)


def classify_app(
    kind: str, status: int, raw: bytes, headers: Mapping[str, str] | None = None
) -> tuple[Answer, bool]:
    """An Open API answer to a `kind` call (token, send, update, reply), and whether it
    says the message can no longer be updated (or replied to)."""
    answer = classify(status, raw, headers)
    code = answer.code
    if answer.ok or code is None:
        return answer, False
    if code in _GONE.get(kind, ()):
        gone = Answer(
            Outcome.PERMANENT, code, status, answer.message, Reason.MESSAGE_GONE, _GONE_FIX
        )
        return gone, True
    if code == 230099 and "action is lock" in answer.message:
        # a JSON 2.0 card in the middle of a click: update it again shortly
        return dataclasses.replace(answer, outcome=Outcome.RETRY, reason=Reason.RATE_LIMITED), False
    if code in _APP_CODES:
        outcome, reason, fix = _APP_CODES[code]
        after = answer.retry_after if outcome is Outcome.RETRY else None
        return Answer(outcome, code, answer.http_status, answer.message, reason, fix, after), False
    return answer, False


def _shared(card: Mapping[str, Any]) -> bool:
    if card.get("type") in ("template", "card"):
        return True  # update_multi lives in the template or card entity
    config = card.get("config")
    return isinstance(config, Mapping) and config.get("update_multi") is True


def _uuid_problem(uuid: str | None) -> str | None:
    if uuid is not None and len(uuid) > MAX_UUID:
        return f"uuid is {len(uuid)} characters: Feishu takes at most {MAX_UUID}"
    return None


def _bad_message_id(message_id: str) -> AppResult:
    text = f"{message_id[:40]!r} is not a Feishu message_id"
    return AppResult(
        Answer(Outcome.PERMANENT, None, None, text, Reason.MESSAGE_GONE, _GONE_FIX), None, True
    )


def _object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _message_id(raw: bytes) -> str | None:
    data = _object(raw).get("data")
    value = data.get("message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None
