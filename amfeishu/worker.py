"""One target's delivery loop: batch → dedup → merge → plan → limit → sink → settle.

The worker owns retry and backoff; a sink only says what an answer means.
While a target waits (grouping window, rate limit, backoff) new notifications
keep joining its queue, so a storm becomes a few digest cards rather than a
backlog of hundreds. Each batch works with one Generation, taken when the
batch starts: a reload in the middle of a batch never pairs one config's
target with another config's templates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from amfeishu.backend.base import DEAD, DELIVERED, DUPLICATE, Entry, Outbox, StorageError
from amfeishu.backend.cards import CardRegistry, MemoryCards
from amfeishu.cards import plan
from amfeishu.cards.actions import app_context, group_id
from amfeishu.cards.plan import Card, Queued
from amfeishu.cards.text import zone
from amfeishu.config.types import Config, Target
from amfeishu.dedup import Dedup
from amfeishu.feishu.answers import Answer, Outcome
from amfeishu.generation import Generation
from amfeishu.logs import short_id
from amfeishu.metrics import Metrics
from amfeishu.models import parse_stored
from amfeishu.sinks import Sink
from amfeishu.storm_mode import StormMode

log = logging.getLogger("amfeishu.delivery")
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
MAX_IN_MEMORY = 5000  # notifications per target held in memory (≈4 KB each: their bytes)
CARDS_PER_BATCH = 5  # cards planned at a time (Feishu allows 5/s per bot)
_REFUSED = (Outcome.TOO_LARGE, Outcome.BAD_CARD)


@dataclass
class RecentCard:
    target: str
    at: float
    message: dict[str, Any]
    trace_id: str


@dataclass
class Clock:
    """Time as the worker sees it; tests hand in their own."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    jitter: Callable[[float, float], float] = random.uniform


@dataclass
class Needs:
    """Everything a worker uses, handed in by the dispatcher."""

    outbox: Outbox
    dedup: Dedup
    metrics: Metrics
    generation: Callable[[], Generation]  # the current one; read once per batch
    sink_for: Callable[[Target, Config], Sink]  # the target's sink, as this config has it
    recent: deque[RecentCard] = field(default_factory=lambda: deque(maxlen=50))
    clock: Clock = field(default_factory=Clock)
    stopping: Callable[[], bool] = lambda: False
    cards: CardRegistry = field(default_factory=MemoryCards)  # app targets' cards


class TargetWorker:
    def __init__(self, name: str, needs: Needs) -> None:
        self.name = name
        self.needs = needs
        self.queue: dict[int, Queued] = {}
        self.overflow = False  # entries wait in the outbox: new ones queue behind them
        self.stored = 0  # how many (as of the last poll)
        self.wake = asyncio.Event()  # new work (or stop) for an idle worker
        self._stopped = asyncio.Event()  # ends a pause; arrivals do not (one wake-up each)
        self.task: asyncio.Task[None] | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.storm = StormMode(name)
        self._reported: set[int | None] = set()  # permanent codes already explained in the log
        # Read when scraped, not set on every arrival: no lock taken per request.
        depth = needs.metrics.child(needs.metrics.outbox_depth, name)
        depth.set_function(lambda: len(self.queue) + self.stored)

    def add(self, entry: Entry) -> None:
        count = entry.alerts  # known when this process's receiver parsed it
        if not count:
            try:  # read back from storage: parsed once to check it, again when batched
                count = len(parse_stored(entry.body).alerts)
            except ValueError as exc:  # stored by an older version or edited by hand
                log.error("unreadable outbox entry %s: %s", entry.id, exc)
                return
        self.queue[entry.id] = Queued(entry, alerts=count)
        self.wake.set()

    @property
    def full(self) -> bool:
        return self.overflow or len(self.queue) >= MAX_IN_MEMORY

    def stop(self) -> None:
        """Ends a pause or an idle wait now (the process is stopping)."""
        self._stopped.set()
        self.wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep that ends early when the process stops."""
        if seconds > 0 and not self.needs.stopping():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=seconds)

    async def run(self) -> None:
        clock = self.needs.clock
        while not self.needs.stopping():
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            config = self.needs.generation().config
            if self.name not in config.targets:  # removed by a reload; entries stay pending
                return
            oldest = min(q.entry.received_at for q in self.queue.values())
            await self._pause(oldest + config.grouping.wait - clock.wall())
            await self._pause(self.retry_at - clock.monotonic())
            await self._pause(self.storm.hold_until - clock.wall())
            if self.needs.stopping():
                return
            try:
                await self.deliver_batch()
            except Exception:  # a bug must not kill the worker; entries stay pending
                log.exception("delivery worker for %s failed; retrying", self.name)
                self._backoff(None)

    async def deliver_batch(self) -> None:
        """One batch, start to end, with the generation current when it starts."""
        generation = self.needs.generation()
        target = generation.config.targets.get(self.name)
        if target is None:
            return
        sink = self.needs.sink_for(target, generation.config)
        await sink.limiter.wait()  # meanwhile arrivals keep merging
        backlog = self._backlog()
        per_card = generation.config.grouping.max_alerts_per_card
        storm = self.storm.check(target, per_card, backlog)
        batch = self.storm.batch(self.queue.values()) if storm else self._next_batch(generation)
        items = await self._drop_duplicates(batch)
        if not items:
            return
        # The footer shows the first request's trace id, to find this card in the logs.
        trace = short_id(items[0].entry.trace_id)
        renderer = generation.renderer
        max_per_card = generation.config.grouping.max_alerts_per_card
        safe = any(q.safe_only for q in items)
        if target.app is not None:  # one card per alert group, updated in place
            cards = await self._group_cards(items, target, generation, trace)
            await self._send_all(cards, items, target, sink, generation, backlog, trace)
            return
        notification, groups, skipped = plan.merge(items, target.send_resolved)
        if skipped:
            await self._conveyed(items, skipped, "skipped")
        if notification is None:
            return
        notification = replace(notification, extra={**notification.extra, "trace_id": trace})
        if storm:
            cards = plan.storm(notification, groups, target, renderer, backlog=backlog, safe=safe)
            self.storm.hold_back_partial(cards, items, self.needs.clock.wall())
        else:
            cards = plan.plan(
                notification, groups, target, renderer, max_per_card=max_per_card, safe=safe
            )
        await self._send_all(cards, items, target, sink, generation, backlog, trace)

    async def _send_all(
        self,
        cards: list[Card],
        items: list[Queued],
        target: Target,
        sink: Sink,
        generation: Generation,
        backlog: int,
        trace: str,
    ) -> None:
        """Send planned cards in order; what Feishu answers decides what happens next."""
        renderer = generation.renderer
        while cards:
            card = cards.pop(0)
            waited = await sink.limiter.acquire(lambda _: self._count_wait())
            self.needs.metrics.rate_limit_wait_seconds.labels(self.name).inc(waited)
            if card.template_error:
                self.needs.metrics.template_errors.labels(self.name).inc()
                log.error(
                    "template failed, sent the safe card: %s",
                    card.template_error,
                    extra={"target": self.name},
                )
            answer = await self._send(sink, card, items)
            await self._answered(sink)
            if answer.outcome is Outcome.DELIVERED:
                await self._conveyed(items, card.covers, "delivered")
            elif card.group is not None and not card.safe and answer.outcome in _REFUSED:
                # An app card too large or refused: smaller (or the safe card), still one card.
                members = [q for q in items if q.entry.id in card.covers]
                safe = answer.outcome is Outcome.BAD_CARD
                for q in members:
                    q.safe_only = q.safe_only or safe
                budget = card.size // 2 if not safe else plan.APP_CARD_BYTES
                more = await self._group_cards(members, target, generation, trace, budget=budget)
                cards[:0] = more
            elif answer.outcome is Outcome.TOO_LARGE and card.digest:
                half = card.size // 2  # Feishu measures differently: halve until it fits
                cards[:0] = plan.storm(
                    card.notification, card.groups, target, renderer, backlog=backlog,
                    safe=card.safe, budget=half,
                )  # fmt: skip
            elif answer.outcome is Outcome.TOO_LARGE and (
                len(card.notification.alerts) > 1 or not card.safe
            ):
                # Feishu measures differently than we do: halves, until each fits.
                cards[:0] = plan.split(card, target, renderer)
            elif answer.outcome is Outcome.BAD_CARD and not card.safe:
                # A template Feishu refuses must not lose the alert: once more, as the safe card.
                for q in items:
                    if q.entry.id in card.covers:
                        q.safe_only = True
                alerts = len(card.notification.alerts)
                if card.digest:
                    cards[:0] = plan.storm(
                        card.notification, card.groups, target, renderer, backlog=backlog,
                        safe=True,
                    )  # fmt: skip
                    continue
                cards[:0] = plan.plan(
                    card.notification, card.groups, target, renderer, max_per_card=alerts, safe=True
                )
            elif answer.outcome is Outcome.RETRY:
                await self._retry_later(items, card, answer, generation)
                return
            else:
                await self._give_up(items, card, answer)

    async def _group_cards(
        self,
        items: list[Queued],
        target: Target,
        generation: Generation,
        trace: str,
        *,
        budget: int = plan.APP_CARD_BYTES,
    ) -> list[Card]:
        """An app target's cards: one per alert group, showing what people did on it."""
        delivery = target.app
        assert delivery is not None  # only app targets come here
        tz = zone(target.timezone)
        cards = []
        for members in plan.by_group(items):
            group = group_id(members[-1].notification.group_key)
            record = await self.needs.cards.get(target.name, group)
            firing = any(a.firing for q in members for _, a in q.remaining)
            now = self.needs.clock.wall()
            app = app_context(
                record, delivery, target.name, group, target.language, tz, firing, now
            )
            safe = any(q.safe_only for q in members)
            card, skipped = plan.group_card(
                members, target, generation.renderer, app, safe=safe, budget=budget, trace=trace
            )
            if skipped:
                await self._conveyed(members, skipped, "skipped")
            if card is not None:
                cards.append(card)
        return cards

    async def _answered(self, sink: Sink) -> None:
        """The limiter counts the send from now: safe however late the request left."""
        try:
            await sink.limiter.sent()
        except StorageError as exc:  # the shared slot keeps its grant time: still counted
            log.warning("could not update the shared rate limit: %s", exc)

    def _backlog(self) -> int:
        """Alerts waiting, in memory and in storage (as of the last poll)."""
        held = sum(q.alerts - len(q.delivered) for q in self.queue.values())
        return held + self.stored

    def _next_batch(self, generation: Generation) -> list[Queued]:
        """The oldest entries, up to about a second of cards at Feishu's 5/s.

        Planning the whole backlog at once would render cards that a retry
        throws away, and make an alert that arrives now wait behind all of them.
        """
        budget = generation.config.grouping.max_alerts_per_card * CARDS_PER_BATCH
        batch: list[Queued] = []
        for q in self.queue.values():  # insertion order: oldest first
            if batch and budget <= 0:
                break
            batch.append(q)
            budget -= q.alerts - len(q.delivered)
        return batch

    def _count_wait(self) -> None:
        self.needs.metrics.rate_limit_waits.labels(self.name).inc()

    async def _drop_duplicates(self, items: list[Queued]) -> list[Queued]:
        keep, dupes = [], []
        for q in items:
            if q.deduped or await self.needs.dedup.first_time(q.entry.dedup_key, q.entry.id):
                q.deduped = True
                keep.append(q)
            else:
                dupes.append(q)
        if dupes:
            await self.needs.outbox.finish([q.entry.id for q in dupes], DUPLICATE)
            for q in dupes:
                self._forget(q, "deduplicated")
        return keep

    async def _send(self, sink: Sink, card: Card, items: list[Queued]) -> Answer:
        answer = await sink.send(card)
        code = "" if answer.code is None else str(answer.code)
        attempts = self.needs.metrics.attempts
        attempts.labels(self.name, answer.outcome.value, code, answer.reason.value).inc()
        if answer.outcome is Outcome.DELIVERED:
            self.failures = 0
            self._reported.clear()
            trace = next((q.entry.trace_id for q in items if q.entry.id in card.covers), "")
            now = self.needs.clock.wall()
            self.needs.recent.append(RecentCard(self.name, now, card.message, trace))
            self.needs.metrics.cards.labels(self.name).inc()
        return answer

    async def _conveyed(self, items: list[Queued], covers: dict[int, set[int]], how: str) -> None:
        done = []
        for q in items:
            if q.entry.id in covers:
                q.delivered |= covers[q.entry.id]
                if not q.remaining and q.entry.id in self.queue:
                    done.append(q)
        if done:
            await self.needs.outbox.finish([q.entry.id for q in done], DELIVERED)
        now = self.needs.clock.wall()
        latency = self.needs.metrics.latency.labels(self.name)
        for q in done:
            latency.observe(max(0.0, now - q.entry.received_at))
            self._forget(q, "delivered" if how == "delivered" else "skipped")

    def _forget(self, q: Queued, outcome: str) -> None:
        self.queue.pop(q.entry.id, None)
        if not self.queue and not self.stored:
            self.storm.over()
        self.needs.metrics.notifications.labels(self.name, outcome).inc()
        log.info(
            "notification %s",
            outcome,
            extra={
                "request_id": q.entry.trace_id,
                "target": self.name,
                "outcome": outcome,
                "alerts": q.alerts,
                "attempts": q.entry.attempts,
            },
        )

    def _backoff(self, answer: Answer | None) -> float:
        """Exponential backoff with full jitter; a server hint is a floor."""
        self.failures += 1
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (self.failures - 1))
        delay = self.needs.clock.jitter(0, ceiling)
        if answer is not None and answer.retry_after:
            delay = max(delay, min(answer.retry_after, BACKOFF_CAP))
        self.retry_at = self.needs.clock.monotonic() + delay
        return delay

    async def _retry_later(
        self, items: list[Queued], card: Card, answer: Answer, generation: Generation
    ) -> None:
        delay = self._backoff(answer)
        max_age = generation.config.delivery.max_retry_age
        now = self.needs.clock.wall()
        affected = [q for q in items if q.entry.id in card.covers]
        expired = [q for q in affected if now - q.entry.received_at > max_age]
        await self.needs.outbox.attempted([q.entry.id for q in affected], answer.message)
        for q in affected:
            q.entry.attempts += 1
        self.needs.metrics.notifications.labels(self.name, "failed").inc(len(affected))
        log.warning(
            "delivery failed (%s), retrying in %.1fs: %s",
            answer.reason,
            delay,
            answer.message,
            extra={
                "target": self.name,
                "request_id": affected[0].entry.trace_id if affected else "-",
            },
        )
        if expired:
            await self._dead(expired, f"gave up after {max_age:.0f}s: {answer.message}")

    async def _give_up(self, items: list[Queued], card: Card, answer: Answer) -> None:
        if answer.code not in self._reported:
            self._reported.add(answer.code)
            log.error(
                "Feishu refused the message for good (code %s, %s): %s%s",
                answer.code,
                answer.reason,
                answer.message,
                f"; fix: {answer.fix}" if answer.fix else "",
                extra={"target": self.name},
            )
        await self._dead([q for q in items if q.entry.id in card.covers], answer.message)

    async def _dead(self, items: list[Queued], why: str) -> None:
        await self.needs.outbox.finish([q.entry.id for q in items], DEAD, why)
        for q in items:
            # a replay or a resend must get through
            await self.needs.dedup.forget(q.entry.dedup_key)
            self._forget(q, "dead")
