"""When a target is in a storm: it sends digests from the moment its bot is ten seconds
behind until the backlog is gone (docs/templates.md, "Storm digests").

A worker keeps one StormMode; it decides, and paces the digest that is not full.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from amfeishu.cards.plan import Card, Queued
from amfeishu.cards.sets import digests
from amfeishu.config.types import Target
from amfeishu.feishu.webhook import MAX_BODY_BYTES

log = logging.getLogger("amfeishu.delivery")
STORM_SECONDS = 10.0  # a backlog the bot cannot send in this long at the normal card size …
STORM_MAX_ALERTS = 20_000  # … is sent as digests, this many alerts planned at a time
STORM_LINGER = 5.0  # seconds a digest that is not full waits for more alerts to fill it
STORM_FULL = 0.8  # of the size limit: a digest this big goes out at once


class StormMode:
    def __init__(self, target: str) -> None:
        self.target = target
        self.on = False
        self.hold_until = 0.0  # wall clock: a digest that is not full waits until then

    def check(self, target: Target, max_alerts_per_card: int, backlog: int) -> bool:
        """On when the backlog passes what the bot sends in STORM_SECONDS; it stays on."""
        if not digests(target):
            self.on = False
        elif not self.on:
            rate = target.rate_limit
            cards = min(rate.per_second * STORM_SECONDS, rate.per_minute)
            self.on = backlog > cards * max_alerts_per_card
            if self.on:
                log.warning(
                    "storm: %d alerts waiting, more than the bot sends in %.0fs;"
                    " sending digests until the backlog is gone",
                    backlog,
                    STORM_SECONDS,
                    extra={"target": self.target},
                )
        return self.on

    def over(self) -> None:
        """The backlog is gone: normal cards again."""
        if self.on:
            self.on = False
            log.info("storm over: back to normal cards", extra={"target": self.target})

    @staticmethod
    def batch(queue: Iterable[Queued]) -> list[Queued]:
        """The oldest entries, up to STORM_MAX_ALERTS alerts."""
        chosen: list[Queued] = []
        budget = STORM_MAX_ALERTS
        for q in queue:  # insertion order: oldest first
            if chosen and budget <= 0:
                break
            chosen.append(q)
            budget -= len(q.notification.alerts) - len(q.delivered)
        return chosen

    def hold_back_partial(self, cards: list[Card], items: list[Queued], now: float) -> None:
        """A last digest far from full waits a little for more alerts, unless it is old."""
        self.hold_until = 0.0
        if not cards or cards[-1].size >= STORM_FULL * MAX_BODY_BYTES:
            return
        covered = cards[-1].covers
        oldest = min(q.entry.received_at for q in items if q.entry.id in covered)
        if now < oldest + STORM_LINGER:
            cards.pop()
            self.hold_until = oldest + STORM_LINGER
