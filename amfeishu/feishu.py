"""The Feishu/Lark custom-bot client: sign, POST, and classify the answer.

Facts and sources: /work/shared/feishu-api.md. The caller owns retries and
backoff; this module never sleeps or loops, it only says *may this be retried?*
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

# https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot (频控: 100/min, 5/s per bot)
FEISHU_RATE_PER_SECOND = 5
FEISHU_RATE_PER_MINUTE = 100
# The same guide says "body ≤ 20 KB"; the error text says 30 KB. Budget the smaller figure.
MAX_BODY_BYTES = 20_000
ACCEPTED_HOSTS = ("open.feishu.cn", "open.larksuite.com", "open.larkoffice.com")
HOOK_PATH_PREFIX = "/open-apis/bot/v2/hook/"
CONTENT_TYPE = "application/json; charset=utf-8"  # the IM FAQ's advice against mojibake


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"
    BAD_CARD = "bad_card"  # the caller re-sends the built-in safe card once
    TOO_LARGE = "too_large"  # the caller splits or shrinks; retrying as-is cannot help


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    code: int | None
    http_status: int | None
    message: str
    reason: str
    fix: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


# Feishu body code -> (outcome, reason, fix). Everything not here is decided in classify().
_CODES: dict[int, tuple[Outcome, str, str | None]] = {
    11232: (Outcome.RETRY, "rate_limited", None),
    11233: (Outcome.RETRY, "rate_limited", None),
    99991400: (Outcome.RETRY, "rate_limited", None),
    19001: (
        Outcome.PERMANENT,
        "bad_token",
        "check targets.<name>.webhook: the token is wrong or the bot was removed from the group",
    ),
    19021: (
        Outcome.PERMANENT,
        "bad_signature",
        "check targets.<name>.secret and the host clock (timestamp must be within 1h)",
    ),
    19022: (
        Outcome.PERMANENT,
        "ip_not_allowed",
        "add this host's egress IP to the bot's IP allowlist in the group settings",
    ),
    19024: (
        Outcome.PERMANENT,
        "keyword_missing",
        "set targets.<name>.keyword to one of the bot's keywords (it must be in every card)",
    ),
    19002: (Outcome.BAD_CARD, "bad_card", None),
    11310: (Outcome.BAD_CARD, "bad_card", None),
    11235: (
        Outcome.BAD_CARD,
        "mention_all_forbidden",
        "the group lets only admins @all: drop 'all' from targets.<name>.mentions "
        "or ask the group owner to allow it",
    ),
    19036: (Outcome.TOO_LARGE, "too_large", None),
}
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def sign(timestamp: int, secret: str) -> str:
    # Feishu's construction: the *key* is "ts\nsecret" and the message is empty
    # (not DingTalk's key=secret, message="ts\nsecret").
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def build_body(message: Mapping[str, Any], secret: str | None, now: float | None = None) -> bytes:
    payload = dict(message)
    if secret:
        ts = int(time.time() if now is None else now)  # seconds, never milliseconds
        payload["timestamp"] = str(ts)  # the official example sends a string
        payload["sign"] = sign(ts, secret)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<redacted>"
    if not parts.scheme or not host:
        return "<redacted>"
    # the path of a hook URL is the credential; only its fixed prefix is safe to show
    prefix = HOOK_PATH_PREFIX if parts.path.startswith(HOOK_PATH_PREFIX) else "/"
    return f"{parts.scheme}://{host}{port}{prefix}<redacted>"


def classify(http_status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
    retry_after = _retry_after(headers)
    data = _json_object(body)
    code = _code(data) if data is not None else None
    msg = _short(str(data.get("msg") or data.get("StatusMessage") or "")) if data else ""
    is_2xx = 200 <= http_status < 300

    if code == 0 and is_2xx:
        return Answer(Outcome.DELIVERED, 0, http_status, "delivered", "ok")
    # The HTTP status speaks first only where it is unambiguous.
    if http_status == 429:
        what = f"HTTP 429, code {code}: {msg}" if code is not None else "HTTP 429"
        return Answer(Outcome.RETRY, code, 429, what, "http_429", retry_after=retry_after)
    if http_status == 413:
        return Answer(Outcome.TOO_LARGE, code, 413, "HTTP 413: body too large", "too_large")
    if code is None or code == 0:
        # no usable code: not JSON, JSON without code, or code 0 on a non-2xx status
        if data is None:
            what = "body is not JSON"
        else:
            what = "JSON body without a code" if code is None else "code 0 on an error status"
        text = f"HTTP {http_status}, {what}"
        if http_status >= 500 or http_status == 408:  # a proxy's or Feishu's own trouble
            reason = _http_reason(http_status)
            return Answer(Outcome.RETRY, code, http_status, text, reason, None, retry_after)
        reason = "not_json" if data is None else "no_code"
        return Answer(Outcome.PERMANENT, code, http_status, text, reason)

    text = f"feishu code {code}: {msg}" if msg else f"feishu code {code}"
    if code == 9499:
        # 9499 is both "Bad Request" and (observed, HTTP 400) "too many request"
        if "too many request" in msg.lower():
            return Answer(Outcome.RETRY, code, http_status, text, "rate_limited", None, retry_after)
        return Answer(Outcome.BAD_CARD, code, http_status, text, "bad_card")
    if code in _CODES:
        outcome, reason, fix = _CODES[code]
        after = retry_after if outcome is Outcome.RETRY else None
        return Answer(outcome, code, http_status, text, reason, fix, after)
    if http_status >= 500:
        return Answer(Outcome.RETRY, code, http_status, text, "http_5xx", None, retry_after)
    return Answer(Outcome.PERMANENT, code, http_status, text, "unknown_code")


class FeishuClient:
    """One pooled HTTP client shared by every target."""

    def __init__(
        self, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )

    async def send(
        self,
        webhook: str,
        secret: str | None,
        message: Mapping[str, Any],
        *,
        body: bytes | None = None,
    ) -> Answer:
        """POST one message; never raises for network trouble, never leaks the URL or secret."""
        content = build_body(message, secret) if body is None else body
        try:
            resp = await self._http.post(
                webhook, content=content, headers={"Content-Type": CONTENT_TYPE}
            )
        except httpx.TimeoutException as e:
            text = f"timed out after {self._timeout:g}s ({type(e).__name__})"
            return Answer(Outcome.RETRY, None, None, text, "timeout")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            text = f"invalid webhook URL ({type(e).__name__}): {_scrub(str(e), webhook, secret)}"
            return Answer(
                Outcome.PERMANENT, None, None, text, "bad_url", "check targets.<name>.webhook"
            )
        except httpx.HTTPError as e:
            # httpx messages may embed the request URL, i.e. the token: scrub them
            text = f"network error ({type(e).__name__}): {_scrub(str(e), webhook, secret)}"
            return Answer(Outcome.RETRY, None, None, text.rstrip(": "), "network")
        answer = classify(resp.status_code, resp.content, resp.headers)
        return dataclasses.replace(answer, message=_scrub(answer.message, webhook, secret))

    async def aclose(self) -> None:
        await self._http.aclose()


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _code(data: Mapping[str, Any]) -> int | None:
    # `code` is the current field; `StatusCode` is the legacy one (older bodies carry only it)
    for key in ("code", "StatusCode"):
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    return None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after", "x-ogw-ratelimit-reset"):
        value = (lower.get(name) or "").strip()
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:  # Retry-After may also be an HTTP date
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return None


def _http_reason(status: int) -> str:
    return "http_5xx" if status >= 500 else f"http_{status}"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub(text: str, webhook: str, secret: str | None) -> str:
    try:
        token = urlsplit(webhook).path.rsplit("/", 1)[-1]
    except ValueError:
        token = ""
    if webhook:
        text = text.replace(webhook, redact_url(webhook))
    for needle in (secret, token):
        if needle and len(needle) >= 4:
            text = text.replace(needle, "<redacted>")
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
