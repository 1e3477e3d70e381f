"""Where a target's cards go: one protocol, a kind per way of delivering.

A sink sends one card and says what Feishu answered, as an Answer; it
never sleeps or retries (the worker owns backoff), and it carries the
limiter of what it sends to, so the worker treats every kind alike.
AppSink is a Feishu app: one card per alert group, updated in place
(README.md, "Feishu app mode").
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from amfeishu.backend.base import StorageError
from amfeishu.backend.cards import FIRING, RESOLVED, CardRecord, CardRegistry
from amfeishu.cards.plan import Card, Group
from amfeishu.cards.text import translate
from amfeishu.config.types import AppDelivery, Secret
from amfeishu.feishu.answers import Answer, Outcome, Reason
from amfeishu.feishu.openapi import FeishuApp
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.models import SEVERITY_ORDER
from amfeishu.ratelimit import Limiter, Unlimited

log = logging.getLogger("amfeishu.delivery")


class Sink(Protocol):
    limiter: Limiter

    async def send(self, card: Card) -> Answer: ...


@dataclass
class WebhookSink:
    """A Feishu custom bot: the signed POST to its webhook."""

    client: FeishuClient
    webhook: Secret
    secret: Secret | None
    limiter: Limiter

    async def send(self, card: Card) -> Answer:
        secret = self.secret.get() if self.secret else None
        return await self.client.send(self.webhook.get(), secret, card.message)


@dataclass
class PreviewSink:
    """A target without a webhook: the card goes to the log (and the recent cards)."""

    target: str
    limiter: Limiter = field(default_factory=Unlimited)

    async def send(self, card: Card) -> Answer:
        log.info(
            "preview card: %s",
            json.dumps(card.message, ensure_ascii=False),
            extra={"target": self.target},
        )
        return Answer(Outcome.DELIVERED, 0, None, "preview", Reason.PREVIEW)


@dataclass
class AppSink:
    """A Feishu app: a group's card is sent once, then updated in place; a reply under it
    marks the group's resolution and a raised severity (an update pings nobody)."""

    app: FeishuApp
    delivery: AppDelivery
    target: str
    cards: CardRegistry
    limiter: Limiter
    delivery_language: str = "zh"  # of the replies
    on_update: Callable[[str], None] = lambda result: None  # counts card updates by result

    async def send(self, card: Card) -> Answer:
        group = card.group
        if group is None:  # planned for a webhook target: a bug, not Feishu's answer
            text = "an app card without its alert group"
            return Answer(Outcome.PERMANENT, None, None, text, Reason.BAD_CARD)
        record = await self.cards.get(self.target, group.id) or CardRecord(self.target, group.id)
        fires_again = record.state == RESOLVED and not group.resolved
        content = card.message.get("card", card.message)  # an app sends the card itself
        if record.message_id and self.delivery.update_in_place and not fires_again:
            result = await self.app.update(record.message_id, content)
            self.on_update("gone" if result.gone else result.answer.outcome.value)
            if result.ok:
                await self._replies(record, card, group)
                return await self._settle(record, group, result.answer, fires_again)
            if not result.gone:
                return result.answer
            log.info(
                "the card of group %s can no longer be updated (%s); sending a new one",
                group.id,
                result.answer.message,
                extra={"target": self.target},
            )
        if fires_again:  # a new incident: a new card, nobody has acknowledged it yet
            record = CardRecord(self.target, group.id)
        uuid = _uuid(self.target, group.id, card.covers, "card")
        delivery = self.delivery
        result = await self.app.send(
            delivery.receive_id_type, delivery.receive_id, "interactive", content, uuid
        )
        if not result.ok:
            return result.answer
        record.message_id, record.sent_at = result.message_id or "", time.time()
        return await self._settle(record, group, result.answer, fires_again)

    async def _replies(self, record: CardRecord, card: Card, group: Group) -> None:
        """One line under the card when the group resolved, or its severity rose."""
        language = "en" if self.delivery_language == "en" else "zh"
        if group.resolved and record.state != RESOLVED:
            text = translate(language, "reply_resolved", title=group.title)
        elif not group.resolved and _rank(group.severity) < _rank(record.severity):
            severity = translate(language, group.severity)
            text = translate(language, "reply_raised", severity=severity, title=group.title)
        else:
            return
        uuid = _uuid(self.target, group.id, card.covers, "reply")
        result = await self.app.reply(record.message_id, "text", {"text": text}, uuid)
        if not result.ok:  # the card itself is up to date: say so, do not resend it
            log.warning(
                "could not post the reply under the card: %s",
                result.answer.message,
                extra={"target": self.target},
            )

    async def _settle(
        self, record: CardRecord, group: Group, answer: Answer, fires_again: bool
    ) -> Answer:
        record.state = RESOLVED if group.resolved else FIRING
        record.severity = group.severity
        record.payload = group.payload
        try:
            # A click may have landed while Feishu answered: keep it (not for a new incident).
            current = None if fires_again else await self.cards.get(self.target, group.id)
            if current is not None:
                record.take_people(current)
            await self.cards.save(record)
        except StorageError as exc:  # retried with the same uuid: Feishu keeps one message
            text = f"card {record.message_id} sent, but storing it failed: {exc}"
            return Answer(Outcome.RETRY, answer.code, answer.http_status, text, Reason.STORAGE)
        return answer


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def _uuid(target: str, group: str, covers: dict[int, set[int]], what: str) -> str:
    """The same card of the same entries gets the same uuid: a resend lands on one message."""
    entries = ",".join(str(i) for i in sorted(covers))
    digest = hashlib.sha256(f"{target}|{group}|{entries}|{what}".encode()).hexdigest()
    return "amf-" + digest[:40]
