"""Alertmanager's API v2, for the buttons on app cards: create and expire silences.

https://prometheus.io/docs/alerting/latest/clients/ and the OpenAPI spec
https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml
(POST /api/v2/silences, DELETE /api/v2/silence/{id}). A callback must be
answered within 3 s, so every call is short and a failure is an
AlertmanagerError with a message fit for a toast; credentials never appear.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from amfeishu.config.types import AlertmanagerAPI

TIMEOUT = 2.0  # seconds: the click's answer is due within 3


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused; the text says which, never a secret."""

    def __init__(self, text: str, status: int | None = None, body: str = "") -> None:
        super().__init__(text)
        self.status = status  # Alertmanager's HTTP status, when it answered
        self.body = body


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class AlertmanagerClient:
    def __init__(
        self,
        api: AlertmanagerAPI,
        *,
        timeout: float = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base = api.url.rstrip("/")
        self.timeout = timeout
        headers = {}
        if api.bearer_token is not None:
            headers["Authorization"] = "Bearer " + api.bearer_token.get()
        elif api.basic_username is not None and api.basic_password is not None:
            pair = f"{api.basic_username}:{api.basic_password.get()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), headers=headers, transport=transport
        )

    async def create_silence(
        self, labels: dict[str, str], starts: float, ends: float, created_by: str, comment: str
    ) -> str:
        """A silence matching exactly these labels (equality matchers); its id."""
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in sorted(labels.items())
            ],
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        data = await self._call("POST", "/api/v2/silences", json=body)
        silence_id = data.get("silenceID") if isinstance(data, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise AlertmanagerError("Alertmanager answered without a silence id")
        return silence_id

    async def expire_silence(self, silence_id: str) -> None:
        """Expire it now; one already expired or gone counts as done."""
        try:
            await self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")
        except AlertmanagerError as exc:
            # 404 (API v2 spec); older servers (Debian's 0.25) answer 500 "silence not found"
            if exc.status != 404 and not (exc.status == 500 and "not found" in exc.body):
                raise

    async def silences(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/api/v2/silences")
        return data if isinstance(data, list) else []

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = await self._http.request(method, self.base + path, json=json)
        except httpx.TimeoutException:
            text = f"Alertmanager did not answer within {self.timeout:g}s"
            raise AlertmanagerError(text) from None
        except httpx.HTTPError as exc:
            raise AlertmanagerError(f"cannot reach Alertmanager ({type(exc).__name__})") from None
        if response.status_code >= 300:
            text = " ".join(response.text.split())[:200]
            raise AlertmanagerError(
                f"Alertmanager refused: HTTP {response.status_code}: {text}",
                response.status_code,
                text,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AlertmanagerError("Alertmanager answered with something not JSON") from None

    async def aclose(self) -> None:
        await self._http.aclose()
