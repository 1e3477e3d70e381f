"""Feishu's answers → an Outcome and a closed Reason (a metric label).

The custom-bot codes are those of
https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot (its error
code table) and the server-side error codes page
https://open.feishu.cn/document/server-docs/getting-started/server-error-codes.
Success is HTTP 2xx with `code == 0` in the body: Feishu answers HTTP 200
when it refuses, too. Only the caller retries; this module only says whether
it may.

Only the refusals those pages name as the operator's to fix (bad token,
signature, IP allowlist, keyword) are permanent, and the malformed or
oversized card keeps its own outcome. Every answer we cannot read as one of
those (a body that is not JSON, such as a proxy's HTML error page; JSON
without a code; a code we do not know) is retried with backoff like any
transient failure, until `delivery.max_retry_age`: a captive portal or a
code Feishu adds tomorrow must not throw an alert away at the first try.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"
    BAD_CARD = "bad_card"  # the caller re-sends the built-in safe card once
    TOO_LARGE = "too_large"  # the caller splits or shrinks; retrying as-is cannot help


class Reason(enum.StrEnum):
    """Why an answer is what it is: a closed set, used as a metric label."""

    OK = "ok"
    PREVIEW = "preview"  # a preview target: logged, not sent
    RATE_LIMITED = "rate_limited"
    HTTP_429 = "http_429"
    HTTP_408 = "http_408"
    HTTP_5XX = "http_5xx"
    TIMEOUT = "timeout"
    NETWORK = "network"
    BAD_URL = "bad_url"
    BAD_TOKEN = "bad_token"
    BAD_SIGNATURE = "bad_signature"
    IP_NOT_ALLOWED = "ip_not_allowed"
    KEYWORD_MISSING = "keyword_missing"
    BAD_CARD = "bad_card"
    MENTION_ALL_FORBIDDEN = "mention_all_forbidden"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NO_CODE = "no_code"
    UNKNOWN_CODE = "unknown_code"
    STORAGE = "storage"  # Feishu took it, but recording it failed (retried with the same uuid)
    QUOTA_EXHAUSTED = "quota_exhausted"  # a free tenant's monthly API calls (99991403)
    BAD_APP = "bad_app"  # an app's credentials, scopes or state
    NOT_ALLOWED = "not_allowed"  # the app may not post there (not in the chat, blocked, …)
    BAD_RECEIVER = "bad_receiver"  # the chat or person is wrong or gone
    MESSAGE_GONE = "message_gone"  # the card cannot be updated any more


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    code: int | None
    http_status: int | None
    message: str
    reason: Reason
    fix: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


# Feishu body code -> (outcome, reason, fix). Everything not here is decided in classify(),
# and a code it does not know is retried.
_CODES: dict[int, tuple[Outcome, Reason, str | None]] = {
    11232: (Outcome.RETRY, Reason.RATE_LIMITED, None),
    11233: (Outcome.RETRY, Reason.RATE_LIMITED, None),
    99991400: (Outcome.RETRY, Reason.RATE_LIMITED, None),
    19001: (
        Outcome.PERMANENT,
        Reason.BAD_TOKEN,
        "check targets.<name>.webhook: the token is wrong or the bot was removed from the group",
    ),
    19021: (
        Outcome.PERMANENT,
        Reason.BAD_SIGNATURE,
        "check targets.<name>.secret and the host clock (timestamp must be within 1h)",
    ),
    19022: (
        Outcome.PERMANENT,
        Reason.IP_NOT_ALLOWED,
        "add this host's egress IP to the bot's IP allowlist in the group settings",
    ),
    19024: (
        Outcome.PERMANENT,
        Reason.KEYWORD_MISSING,
        "set targets.<name>.keyword to one of the bot's keywords (it must be in every card)",
    ),
    19002: (Outcome.BAD_CARD, Reason.BAD_CARD, None),
    11310: (Outcome.BAD_CARD, Reason.BAD_CARD, None),
    11235: (
        Outcome.BAD_CARD,
        Reason.MENTION_ALL_FORBIDDEN,
        "the group lets only admins @all: drop 'all' from targets.<name>.mentions "
        "or ask the group owner to allow it",
    ),
    19036: (Outcome.TOO_LARGE, Reason.TOO_LARGE, None),
}


def classify(http_status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Answer:
    retry_after = _retry_after(headers)
    data = _json_object(body)
    code = _code(data) if data is not None else None
    msg = _short(str(data.get("msg") or data.get("StatusMessage") or "")) if data else ""
    is_2xx = 200 <= http_status < 300

    if code == 0 and is_2xx:
        return Answer(Outcome.DELIVERED, 0, http_status, "delivered", Reason.OK)
    # The HTTP status speaks first only where it is unambiguous.
    if http_status == 429:
        what = f"HTTP 429, code {code}: {msg}" if code is not None else "HTTP 429"
        return Answer(Outcome.RETRY, code, 429, what, Reason.HTTP_429, retry_after=retry_after)
    if http_status == 413:
        return Answer(Outcome.TOO_LARGE, code, 413, "HTTP 413: body too large", Reason.TOO_LARGE)
    if code is None or code == 0:
        # no usable code: not JSON, JSON without code, or code 0 on a non-2xx status
        if data is None:
            what = "body is not JSON"
        else:
            what = "JSON body without a code" if code is None else "code 0 on an error status"
        text = f"HTTP {http_status}, {what}"
        if http_status >= 500 or http_status == 408:  # a proxy's or Feishu's own trouble
            reason = _http_reason(http_status)
        else:  # not an answer we know to be final: retried, and counted by what it was
            reason = Reason.NOT_JSON if data is None else Reason.NO_CODE
        return Answer(Outcome.RETRY, code, http_status, text, reason, None, retry_after)

    text = f"feishu code {code}: {msg}" if msg else f"feishu code {code}"
    if code == 9499:
        # 9499 is both "Bad Request" and (observed, HTTP 400) "too many request"
        if "too many request" in msg.lower():
            return Answer(
                Outcome.RETRY, code, http_status, text, Reason.RATE_LIMITED, None, retry_after
            )
        return Answer(Outcome.BAD_CARD, code, http_status, text, Reason.BAD_CARD)
    if code in _CODES:
        outcome, reason, fix = _CODES[code]
        after = retry_after if outcome is Outcome.RETRY else None
        return Answer(outcome, code, http_status, text, reason, fix, after)
    reason = Reason.HTTP_5XX if http_status >= 500 else Reason.UNKNOWN_CODE
    return Answer(Outcome.RETRY, code, http_status, text, reason, None, retry_after)


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


def _http_reason(status: int) -> Reason:
    return Reason.HTTP_5XX if status >= 500 else Reason.HTTP_408


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
