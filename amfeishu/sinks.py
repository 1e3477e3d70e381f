"""Where a target's cards go: one protocol, a kind per way of delivering.

A sink sends one message and says what Feishu answered, as an Answer; it
never sleeps or retries (the worker owns backoff), and it carries the
limiter of what it sends to, so the worker treats every kind alike.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from amfeishu.config.types import Secret
from amfeishu.feishu.answers import Answer, Outcome, Reason
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.ratelimit import Limiter, Unlimited

log = logging.getLogger("amfeishu.delivery")


class Sink(Protocol):
    limiter: Limiter

    async def send(self, message: dict[str, Any]) -> Answer: ...


@dataclass
class WebhookSink:
    """A Feishu custom bot: the signed POST to its webhook."""

    client: FeishuClient
    webhook: Secret
    secret: Secret | None
    limiter: Limiter

    async def send(self, message: dict[str, Any]) -> Answer:
        secret = self.secret.get() if self.secret else None
        return await self.client.send(self.webhook.get(), secret, message)


@dataclass
class PreviewSink:
    """A target without a webhook: the card goes to the log (and the recent cards)."""

    target: str
    limiter: Limiter = field(default_factory=Unlimited)

    async def send(self, message: dict[str, Any]) -> Answer:
        log.info(
            "preview card: %s",
            json.dumps(message, ensure_ascii=False),
            extra={"target": self.target},
        )
        return Answer(Outcome.DELIVERED, 0, None, "preview", Reason.PREVIEW)
