"""POST /feishu/callback/{app}: a verified click → ack, silence or unsilence → the answer.

Feishu's callback protocol: URL verification, then `card.action.trigger`
events, encrypted and signed when the app has an encrypt_key, answered
within 3 seconds and never sent again (README.md, "Feishu app mode";
https://open.feishu.cn/document/feishu-cards/card-callback-communication).
Every check comes before anything is done: a body that fails one is
answered 401 (400 when it is not JSON at all) and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from amfeishu.alertmanager import AlertmanagerClient, AlertmanagerError
from amfeishu.backend.base import StorageError
from amfeishu.backend.cards import CardRecord
from amfeishu.cards import plan
from amfeishu.cards.actions import app_context
from amfeishu.cards.text import translate, zone
from amfeishu.config.reader import parse_duration
from amfeishu.config.types import App, Config, Target
from amfeishu.edge import HTTPError, read_bounded
from amfeishu.feishu import crypto
from amfeishu.models import PayloadError, parse_notification
from amfeishu.service import Service

log = logging.getLogger("amfeishu.callbacks")
BODY_LIMIT = 64 * 1024
EVENT_TTL = 3600.0  # an event id is refused again for this long (Feishu never resends one)
_REFUSED_AS_BAD_INPUT = frozenset({"not_json", "bad_body"})
_SILENCE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")  # Alertmanager's are UUIDs


class Callbacks:
    def __init__(
        self,
        service: Service,
        *,
        clock: Callable[[], float] = time.time,
        alertmanager: Callable[[Config], AlertmanagerClient | None] | None = None,
    ) -> None:
        self.service = service
        self.clock = clock
        self._alertmanager = alertmanager or _alertmanager_for
        self._cleanups: set[asyncio.Task[None]] = set()  # silences to expire after an answer

    async def handle(self, request: Request) -> Response:
        generation = self.service.generation  # one config for the whole click
        config = generation.config
        name = request.path_params["app"]
        app = config.apps.get(name)
        if app is None:
            raise HTTPError(404, f"unknown app {name!r:.60}")
        raw = await read_bounded(request.scope, request.receive, BODY_LIMIT)
        body = self._verified(app, raw, request.headers)
        if body.get("type") == "url_verification":
            self._token(app, body.get("token"))
            return JSONResponse({"challenge": str(body.get("challenge", ""))})
        header = body.get("header") if isinstance(body.get("header"), dict) else {}
        assert isinstance(header, dict)
        self._token(app, header.get("token"))
        if header.get("app_id") != app.app_id:
            raise HTTPError(401, "callback for another app (header.app_id)")
        if not app.encrypt_key:  # signed requests carry their time in a header, checked above
            self._fresh(_seconds(header.get("create_time")))
        if header.get("event_type") != "card.action.trigger":
            raise HTTPError(400, f"event_type {header.get('event_type')!r:.60} is not handled")
        event_id = str(header.get("event_id") or "")
        if not event_id:
            raise HTTPError(400, "header.event_id is missing")
        try:
            first = await self.service.cards.first_event(event_id, EVENT_TTL)
        except StorageError as exc:  # answered at once: Feishu shows the toast, never resends
            log.warning("callback %s not handled: %s", event_id[:40], exc)
            return _toast("zh", "error", "toast_busy")  # the target is not known yet
        if not first:
            raise HTTPError(401, "this event was handled already")
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        assert isinstance(event, dict)
        return await self._act(config, generation.renderer, name, event)

    def _verified(self, app: App, raw: bytes, headers: Any) -> dict[str, Any]:
        key = app.encrypt_key.get() if app.encrypt_key else None
        try:
            received = headers.get("x-lark-signature")
            if key and received is None:
                # Whether Feishu signs the URL check is not documented, and lark-oapi answers
                # it before any signature check: an unsigned challenge is answered (making it
                # takes the encrypt key; it changes nothing), anything else unsigned is refused.
                with contextlib.suppress(crypto.CallbackError):  # then refused as unsigned
                    body = crypto.open_body(raw, key)
                    if body.get("type") == "url_verification":
                        return body
            if key:
                timestamp = headers.get("x-lark-request-timestamp", "")
                nonce = headers.get("x-lark-request-nonce", "")
                crypto.verify_signature(timestamp, nonce, key, raw, received)
                crypto.check_timestamp(timestamp, self.clock())
            return crypto.open_body(raw, key)
        except crypto.CallbackError as exc:
            status = 400 if exc.reason in _REFUSED_AS_BAD_INPUT else 401
            raise HTTPError(status, f"callback refused: {exc}") from None

    def _token(self, app: App, token: Any) -> None:
        expected = app.verification_token
        given = str(token or "").encode()
        if expected is None or not hmac.compare_digest(given, expected.get().encode()):
            raise HTTPError(401, "callback refused: the verification token does not match")

    def _fresh(self, seconds: float | None) -> None:
        if seconds is None or abs(self.clock() - seconds) > crypto.MAX_AGE_SECONDS:
            raise HTTPError(401, "callback refused: its time is missing or not within 5 minutes")

    async def _act(
        self, config: Config, renderer: Any, app: str, event: dict[str, Any]
    ) -> Response:
        action = event.get("action") if isinstance(event.get("action"), dict) else {}
        assert isinstance(action, dict)
        value = action.get("value") if isinstance(action.get("value"), dict) else {}
        assert isinstance(value, dict)
        operator = event.get("operator") if isinstance(event.get("operator"), dict) else {}
        assert isinstance(operator, dict)
        who = str(operator.get("open_id") or "")
        kind = str(value.get("action") or "")
        target = config.targets.get(str(value.get("t") or ""))
        language = "en" if target is not None and target.language == "en" else "zh"
        metrics = self.service.metrics
        if target is None or target.app is None or target.app.app != app:
            metrics.callbacks.labels(app, kind or "none", "unknown").inc()
            return _toast(language, "error", "toast_unknown")
        cards, group = self.service.cards, str(value.get("g") or "")
        try:
            record = await cards.get(target.name, group)
        except StorageError as exc:
            log.warning("%s from the card failed: %s", kind, exc, extra={"target": target.name})
            metrics.callbacks.labels(app, kind or "none", "failed").inc()
            return _toast(language, "error", "toast_busy")
        known = kind in ("ack", "silence") or (kind == "unsilence" and _named_silences(value))
        if record is None or not known:
            metrics.callbacks.labels(app, kind or "none", "unknown").inc()
            return _toast(language, "error", "toast_unknown")
        try:
            toast, values, created = await self._apply(config, target, record, kind, value, who)
        except AlertmanagerError as exc:
            log.warning("%s from the card failed: %s", kind, exc, extra={"target": target.name})
            metrics.callbacks.labels(app, kind, "failed").inc()
            return _toast(language, "error", "toast_no_am", why=str(exc)[:200])
        try:
            # A delivery may have saved the record meanwhile: keep its card, add the click.
            fresh = await cards.get(target.name, group) or record
            fresh.take_people(record)
            await cards.save(fresh)
        except StorageError as exc:
            log.warning("%s from the card failed: %s", kind, exc, extra={"target": target.name})
            metrics.callbacks.labels(app, kind, "failed").inc()
            self._expire_later(config, created)  # not kept, so not made: nothing changed
            return _toast(language, "error", "toast_busy")
        metrics.callbacks.labels(app, kind, "done").inc()
        log.info("%s from the card by %s", kind, who or "?", extra={"target": target.name})
        card = self._card(target, renderer, fresh, language)
        answer = _toast_body(language, "success", toast, **values)
        if card is not None:
            answer["card"] = {"type": "raw", "data": card["card"]}
        return JSONResponse(answer)

    async def _apply(
        self,
        config: Config,
        target: Target,
        record: CardRecord,
        kind: str,
        value: dict[str, Any],
        who: str,
    ) -> tuple[str, dict[str, str], list[str]]:
        """The click done on `record`: its toast, and the silences it created."""
        now = self.clock()
        if kind == "ack":
            record.acked_by, record.acked_at = who, now
            return "toast_acked", {}, []
        client = self._alertmanager(config)
        if client is None:
            raise AlertmanagerError("alertmanager.url is not set")
        created: list[str] = []
        try:
            if kind == "silence":
                duration = str(value.get("duration") or "")
                seconds = parse_duration(duration)
                assert target.app is not None
                if seconds is None or duration not in target.app.silence_durations:
                    raise AlertmanagerError(f"duration {duration!r:.20} is not offered")
                comment = f"silenced from the Feishu card (amfeishu target {target.name})"
                by, ends = f"feishu:{who or 'unknown'}", now + seconds

                async def create(labels: dict[str, str]) -> None:
                    created.append(await client.create_silence(labels, now, ends, by, comment))

                label_sets = _silenced_labels(record.payload)
                if not label_sets:
                    raise AlertmanagerError("the card has no firing alert to silence")
                await _within(client.timeout, [create(labels) for labels in label_sets])
                record.silence_ids, record.silenced_by = list(created), who
                record.silenced_until = ends
                return "toast_silenced", {"d": duration}, created
            named = _named_silences(value)
            await _within(client.timeout, [client.expire_silence(i) for i in named])
            record.silence_ids = [i for i in record.silence_ids if i not in named]
            if not record.silence_ids:
                record.silenced_until, record.silenced_by = 0.0, ""
            return "toast_unsilenced", {}, []
        except AlertmanagerError:
            self._expire_later(config, created)  # a click half done is undone
            raise
        finally:
            await client.aclose()

    def _expire_later(self, config: Config, silence_ids: list[str]) -> None:
        """Expire silences after the answer is sent (best effort, logged)."""
        if not silence_ids:
            return

        async def expire() -> None:
            client = self._alertmanager(config)
            if client is None:
                return
            try:
                for silence_id in silence_ids:
                    try:
                        await client.expire_silence(silence_id)
                    except AlertmanagerError as exc:
                        log.warning("could not expire silence %s: %s", silence_id, exc)
            finally:
                await client.aclose()

        task = asyncio.get_running_loop().create_task(expire())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _card(
        self, target: Target, renderer: Any, record: CardRecord, language: str
    ) -> dict[str, Any] | None:
        try:
            notification = parse_notification(record.payload)
        except PayloadError:
            return None  # the click worked; the card changes on the next notification
        assert target.app is not None
        firing = any(a.firing for a in notification.alerts)
        tz = zone(target.timezone)
        app = app_context(
            record, target.app, target.name, record.group, language, tz, firing, self.clock()
        )
        card = plan.fit_group(notification, target, renderer, app)
        return card.message


def _silenced_labels(payload: dict[str, Any]) -> list[dict[str, str]]:
    """What all of the card's alerts share; one label set per alert when they share none."""
    common = payload.get("commonLabels")
    if isinstance(common, dict) and common:
        return [{str(k): str(v) for k, v in common.items()}]
    alerts = payload.get("alerts") if isinstance(payload.get("alerts"), list) else []
    assert isinstance(alerts, list)
    out = []
    for alert in alerts:
        labels = alert.get("labels") if isinstance(alert, dict) else None
        if isinstance(labels, dict) and labels and alert.get("status") != "resolved":
            out.append({str(k): str(v) for k, v in labels.items()})
    return out


async def _within(seconds: float, calls: list[Coroutine[Any, Any, Any]]) -> None:
    """Run the calls side by side, all within `seconds` (the click is answered within 3 s).

    A failed call does not cancel the others: each that succeeds is known (and undone).
    """
    try:
        async with asyncio.timeout(seconds):
            results = await asyncio.gather(*calls, return_exceptions=True)
    except TimeoutError:
        raise AlertmanagerError(f"Alertmanager did not answer within {seconds:g}s") from None
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _named_silences(value: dict[str, Any]) -> list[str]:
    """The silence ids an Unsilence button names (comma-separated)."""
    text = str(value.get("silence_id") or "")
    return [i for i in text.split(",") if _SILENCE_ID.fullmatch(i)]


def _alertmanager_for(config: Config) -> AlertmanagerClient | None:
    return None if config.alertmanager is None else AlertmanagerClient(config.alertmanager)


def _seconds(value: Any) -> float | None:
    """header.create_time: microseconds (also accepts milliseconds and seconds)."""
    try:
        number = float(str(value))
    except ValueError:
        return None
    if number > 1e14:
        return number / 1e6
    return number / 1e3 if number > 1e11 else number


def _toast_body(language: str, kind: str, key: str, **values: str) -> dict[str, Any]:
    """A toast in the target's language, with both for clients set to the other."""
    zh, en = translate("zh", key, **values), translate("en", key, **values)
    content = en if language == "en" else zh
    return {"toast": {"type": kind, "content": content, "i18n": {"zh_cn": zh, "en_us": en}}}


def _toast(language: str, kind: str, key: str, **values: str) -> JSONResponse:
    return JSONResponse(_toast_body(language, kind, key, **values))
