"""The Feishu/Lark custom bot: its hosts, the signed body, the POST.

Facts: https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
(signature, limits, hosts). The caller owns retries and backoff; this module
never sleeps or loops. Tokens and secrets are scrubbed from every message.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from amfeishu.feishu.answers import Answer, Outcome, Reason, classify

# https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot (频控: 100/min, 5/s per bot)
FEISHU_RATE_PER_SECOND = 5
FEISHU_RATE_PER_MINUTE = 100
# The same guide says "body ≤ 20 KB"; the error text says 30 KB. Budget the smaller figure.
MAX_BODY_BYTES = 20_000
SIGN_OVERHEAD = 120  # headroom over a signed body: Feishu measures a little differently
HOSTS = ("open.feishu.cn", "open.larksuite.com", "open.larkoffice.com")
HOOK_PATH_PREFIX = "/open-apis/bot/v2/hook/"
CONTENT_TYPE = "application/json; charset=utf-8"  # the IM FAQ's advice against mojibake
_HOOK_PATH = re.compile(r"/open-apis/bot/v2/hook/[A-Za-z0-9_-]+")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def validate_webhook(url: str) -> str | None:
    """None when usable, else the problem (never echoing the token)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host, like https://open.feishu.cn/open-apis/bot/v2/hook/<token>"
    if parts.hostname in HOSTS:
        if parts.scheme != "https":
            return f"{parts.hostname} must be reached over https"
        if not _HOOK_PATH.fullmatch(parts.path):
            return f"a {parts.hostname} webhook must look like https://{parts.hostname}/open-apis/bot/v2/hook/<token>"
    return None


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


def body_size(message: Mapping[str, Any]) -> int:
    """Bytes of the signed body, with headroom: the one measure of a card's size."""
    return len(build_body(message, "x")) + SIGN_OVERHEAD


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
            return Answer(Outcome.RETRY, None, None, text, Reason.TIMEOUT)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            text = f"invalid webhook URL ({type(e).__name__}): {_scrub(str(e), webhook, secret)}"
            return Answer(
                Outcome.PERMANENT, None, None, text, Reason.BAD_URL, "check targets.<name>.webhook"
            )
        except httpx.HTTPError as e:
            # httpx messages may embed the request URL, i.e. the token: scrub them
            text = f"network error ({type(e).__name__}): {_scrub(str(e), webhook, secret)}"
            return Answer(Outcome.RETRY, None, None, text.rstrip(": "), Reason.NETWORK)
        answer = classify(resp.status_code, resp.content, resp.headers)
        return dataclasses.replace(answer, message=_scrub(answer.message, webhook, secret))

    async def aclose(self) -> None:
        await self._http.aclose()


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
