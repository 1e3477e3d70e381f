"""One worker per target: dedup, merge, render, size guard, rate limit, send, retry.

The worker owns retry and backoff; the Feishu client only says what an
answer means. While a target waits (grouping window, rate limit, backoff)
new notifications keep joining its queue, so a storm becomes a few digest
cards rather than a backlog of hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from cachetools import TTLCache

from amfeishu import assembly
from amfeishu.assembly import Card, Queued
from amfeishu.backends import Backend
from amfeishu.feishu import Answer, FeishuClient, Outcome
from amfeishu.logs import short_id
from amfeishu.metrics import Metrics
from amfeishu.models import parse_notification
from amfeishu.outbox import DEAD, DELIVERED, DUPLICATE, Entry, OutboxError
from amfeishu.ratelimit import Limiter
from amfeishu.settings import Config, Target
from amfeishu.templating import Renderer

log = logging.getLogger("amfeishu.delivery")
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
POLL_INTERVAL = 2.0  # how often replayed dead letters are picked up from storage
MAX_IN_MEMORY = 5000  # notifications per target held parsed in memory (≈25 KB each)
CARDS_PER_BATCH = 5  # cards planned at a time (Feishu allows 5/s per bot)
PURGE_AFTER = 86400.0  # delivered rows kept this long (at least the dedup ttl)


@dataclass
class RecentCard:
    target: str
    at: float
    message: dict[str, Any]
    trace_id: str


class Dispatcher:
    def __init__(
        self,
        config: Config,
        renderer: Renderer,
        backend: Backend,
        client: FeishuClient,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.renderer = renderer
        self.backend = backend
        self.outbox = backend.outbox
        self.dedup = backend.dedup
        self.client = client
        self.metrics = metrics
        self.recent_cards: deque[RecentCard] = deque(maxlen=50)
        self._limiters: dict[str, Limiter] = {}
        self._workers: dict[str, TargetWorker] = {}
        self._seen: TTLCache[tuple[int, float], bool] = TTLCache(maxsize=1_000_000, ttl=7 * 86400)
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    def swap(self, config: Config, renderer: Renderer) -> None:
        """Reload: the next batch of every worker uses the new config and templates."""
        self.config, self.renderer = config, renderer
        for name in config.targets:
            self._worker(name)

    def limiter(self, target: Target) -> Limiter:
        """Shared by every target that posts to the same bot: Feishu limits per bot."""
        bot = target.webhook.get() if target.webhook else target.name
        key = f"{bot}|{target.rate_limit}"
        if key not in self._limiters:
            self._limiters[key] = self.backend.limiter(bot, target.rate_limit)
        return self._limiters[key]

    def _worker(self, name: str) -> TargetWorker:
        worker = self._workers.get(name)
        if worker is None or (worker.task is not None and worker.task.done()):
            # new, or removed by an earlier reload and now back
            pending = worker.queue if worker is not None else {}
            worker = self._workers[name] = TargetWorker(self, name)
            worker.queue.update(pending)
            worker.task = asyncio.get_running_loop().create_task(worker.run())
        return worker

    async def start(self) -> None:
        now = time.time()
        for entry in await self.outbox.recent(now - self.config.dedup.ttl):
            await self.dedup.remember(entry.dedup_key)
        for name in self.config.targets:
            self._worker(name)
        loop = asyncio.get_running_loop()
        if self.backend.shared:  # replicas take their work from the shared outbox
            self._tasks.append(loop.create_task(self._consume()))
        else:
            await self._pick_up_replays()  # what a previous run left pending
        self._tasks.append(loop.create_task(self._housekeeping()))

    async def _consume(self) -> None:
        """Shared outbox: claim new entries, and those a dead replica left behind."""
        while not self.stopping:
            try:
                entries = await self.outbox.claim(list(self.config.targets))
            except OutboxError as exc:
                log.error("cannot read the shared outbox: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.submit(entries)

    def submit(self, entries: list[Entry], *, from_storage: bool = False) -> None:
        for entry in entries:
            seen = (entry.id, entry.received_at)
            if seen in self._seen:
                continue
            if entry.target not in self.config.targets:
                self._seen[seen] = True
                log.warning(
                    "pending notification for unknown target kept in the outbox",
                    extra={"request_id": entry.trace_id, "target": entry.target},
                )
                continue
            worker = self._worker(entry.target)
            if not self.backend.shared and not from_storage and worker.full:
                # Held in memory is a bounded window; the rest waits in the outbox
                # and is read back, oldest first, as the worker drains.
                worker.overflow = True
                worker.stored += 1
                continue
            self._seen[seen] = True
            worker.add(entry)

    async def _housekeeping(self) -> None:
        """Picks up replayed dead letters, refreshes gauges, forgets old deliveries."""
        last_purge = 0.0
        while not self.stopping:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                if not self.backend.shared:  # replays land in storage; pick them up
                    await self._pick_up_replays()
                dead = await self.outbox.dead()
                for name in self._workers:
                    self.metrics.dead_letters.labels(name).set(sum(e.target == name for e in dead))
                if time.time() - last_purge > 600:
                    last_purge = time.time()
                    await self.outbox.purge(time.time() - max(PURGE_AFTER, self.config.dedup.ttl))
            except OutboxError as exc:
                log.error("outbox housekeeping failed: %s", exc)

    async def _pick_up_replays(self) -> None:
        """Pending rows not in memory: replays, a previous run's, or a worker's overflow."""
        refs = await self.outbox.pending_refs()  # type: ignore[attr-defined]
        unknown: dict[str, list[int]] = {}
        for entry_id, received, target in refs:  # oldest first
            if (entry_id, received) not in self._seen:
                unknown.setdefault(target, []).append(entry_id)
        wanted: list[int] = []
        for name, worker in self._workers.items():
            ids = unknown.get(name, [])
            room = max(0, MAX_IN_MEMORY - len(worker.queue))
            wanted += ids[:room]
            worker.stored = max(0, len(ids) - room)
            worker.overflow = worker.stored > 0
            worker.show_depth()
        wanted += [i for name, ids in unknown.items() if name not in self._workers for i in ids]
        if wanted:
            self.submit(await self.outbox.by_ids(wanted), from_storage=True)  # type: ignore[attr-defined]

    def depth(self) -> int:
        return sum(len(w.queue) for w in self._workers.values())

    async def stop(self, grace: float) -> None:
        """Finish in-flight sends within `grace` seconds; the rest stays pending."""
        self.stopping = True
        for task in self._tasks:  # housekeeping holds nothing in flight
            task.cancel()
        for worker in self._workers.values():
            worker.wake.set()
        tasks = [w.task for w in self._workers.values() if w.task]
        _, running = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for task in running:
            task.cancel()
        for task in [*running, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class TargetWorker:
    def __init__(self, dispatcher: Dispatcher, name: str) -> None:
        self.d = dispatcher
        self.name = name
        self.queue: dict[int, Queued] = {}
        self.overflow = False  # entries wait in the outbox: new ones queue behind them
        self.stored = 0  # how many (as of the last poll)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failures = 0
        self.retry_at = 0.0
        self._reported: set[int | None] = set()  # permanent codes already explained in the log

    def add(self, entry: Entry) -> None:
        try:
            notification = entry.notification or parse_notification(entry.payload)
        except ValueError as exc:  # stored by an older version or edited by hand
            log.error("unreadable outbox entry %s: %s", entry.id, exc)
            return
        self.queue[entry.id] = Queued(entry, notification)
        self.show_depth()
        self.wake.set()

    @property
    def full(self) -> bool:
        return self.overflow or len(self.queue) >= MAX_IN_MEMORY

    def show_depth(self) -> None:
        self.d.metrics.outbox_depth.labels(self.name).set(len(self.queue) + self.stored)

    @property
    def target(self) -> Target | None:
        return self.d.config.targets.get(self.name)

    async def _pause(self, seconds: float) -> None:
        """Sleep that ends early when the process stops."""
        if seconds > 0 and not self.d.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event(), timeout=seconds)

    async def _stop_event(self) -> None:
        while not self.d.stopping:
            self.wake.clear()
            await self.wake.wait()

    async def run(self) -> None:
        while not self.d.stopping:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            target = self.target
            if target is None:  # removed by a reload; entries stay pending in the outbox
                return
            oldest = min(q.entry.received_at for q in self.queue.values())
            await self._pause(oldest + self.d.config.grouping.wait - time.time())
            await self._pause(self.retry_at - time.monotonic())
            if self.d.stopping:
                return
            try:
                await self._deliver_batch(target)
            except Exception:  # a bug must not kill the worker; entries stay pending
                log.exception("delivery worker for %s failed; retrying", self.name)
                self._backoff(None)

    async def _deliver_batch(self, target: Target) -> None:
        if not target.preview:
            await self.d.limiter(target).wait()  # meanwhile arrivals keep merging
        items = await self._drop_duplicates(self._next_batch())
        if not items:
            return
        notification, groups, skipped = assembly.merge(items, target.send_resolved)
        if skipped:
            await self._conveyed(items, skipped, "skipped")
        if notification is None:
            return
        # The footer shows the first request's trace id, to find this card in the logs.
        trace = short_id(items[0].entry.trace_id)
        notification = replace(notification, extra={**notification.extra, "trace_id": trace})
        safe = any(q.safe_only for q in items)
        cards = assembly.plan(
            notification,
            groups,
            target,
            self.d.renderer,
            max_per_card=self.d.config.grouping.max_alerts_per_card,
            safe=safe,
        )
        while cards:
            card = cards.pop(0)
            if not target.preview:
                waited = await self.d.limiter(target).acquire(lambda _: self._count_wait())
                self.d.metrics.rate_limit_wait_seconds.labels(self.name).inc(waited)
            if card.template_error:
                self.d.metrics.template_errors.labels(self.name).inc()
                log.error(
                    "template failed, sent the safe card: %s",
                    card.template_error,
                    extra={"target": self.name},
                )
            answer = await self._send(target, card, items)
            if not target.preview:
                await self._answered(target)
            if answer.outcome is Outcome.DELIVERED:
                await self._conveyed(items, card.covers, "delivered")
            elif answer.outcome is Outcome.TOO_LARGE and (
                len(card.notification.alerts) > 1 or not card.safe
            ):
                # Feishu measures differently than we do: halve the budget until it fits.
                cards[:0] = assembly.split(card, target, self.d.renderer, card.size // 2)
            elif answer.outcome is Outcome.BAD_CARD and not card.safe:
                # A template Feishu refuses must not lose the alert: once more, as the safe card.
                for q in items:
                    if q.entry.id in card.covers:
                        q.safe_only = True
                cards[:0] = assembly.plan(
                    card.notification,
                    card.groups,
                    target,
                    self.d.renderer,
                    max_per_card=len(card.notification.alerts),
                    safe=True,
                )
            elif answer.outcome is Outcome.RETRY:
                await self._retry_later(items, card, answer)
                return
            else:
                await self._give_up(items, card, answer)

    async def _answered(self, target: Target) -> None:
        """The limiter counts the send from now: safe however late the request left."""
        try:
            await self.d.limiter(target).sent()
        except OutboxError as exc:  # the shared slot keeps its grant time: still counted
            log.warning("could not update the shared rate limit: %s", exc)

    def _next_batch(self) -> list[Queued]:
        """The oldest entries, up to about a second of cards at Feishu's 5/s.

        Planning the whole backlog at once would render cards that a retry
        throws away, and make an alert that arrives now wait behind all of them.
        """
        budget = self.d.config.grouping.max_alerts_per_card * CARDS_PER_BATCH
        batch: list[Queued] = []
        for q in self.queue.values():  # insertion order: oldest first
            if batch and budget <= 0:
                break
            batch.append(q)
            budget -= len(q.notification.alerts) - len(q.delivered)
        return batch

    def _count_wait(self) -> None:
        self.d.metrics.rate_limit_waits.labels(self.name).inc()

    async def _drop_duplicates(self, items: list[Queued]) -> list[Queued]:
        keep, dupes = [], []
        for q in items:
            if q.deduped or await self.d.dedup.first_time(q.entry.dedup_key, q.entry.id):
                q.deduped = True
                keep.append(q)
            else:
                dupes.append(q)
        if dupes:
            await self.d.outbox.finish([q.entry.id for q in dupes], DUPLICATE)
            for q in dupes:
                self._forget(q, "deduplicated")
        return keep

    async def _send(self, target: Target, card: Card, items: list[Queued]) -> Answer:
        if target.webhook is None:
            log.info(
                "preview card: %s",
                json.dumps(card.message, ensure_ascii=False),
                extra={"target": self.name},
            )
            self._remember_card(card, items)
            return Answer(Outcome.DELIVERED, 0, None, "preview", "ok")
        secret = target.secret.get() if target.secret else None
        answer = await self.d.client.send(target.webhook.get(), secret, card.message)
        code = "" if answer.code is None else str(answer.code)
        self.d.metrics.attempts.labels(self.name, answer.outcome.value, code).inc()
        if answer.outcome is Outcome.DELIVERED:
            self.failures = 0
            self._reported.clear()
            self._remember_card(card, items)
            self.d.metrics.cards.labels(self.name).inc()
        return answer

    def _remember_card(self, card: Card, items: list[Queued]) -> None:
        trace = next((q.entry.trace_id for q in items if q.entry.id in card.covers), "")
        self.d.recent_cards.append(RecentCard(self.name, time.time(), card.message, trace))

    async def _conveyed(self, items: list[Queued], covers: dict[int, set[int]], how: str) -> None:
        done = []
        for q in items:
            if q.entry.id in covers:
                q.delivered |= covers[q.entry.id]
                if not q.remaining and q.entry.id in self.queue:
                    done.append(q)
        if done:
            await self.d.outbox.finish([q.entry.id for q in done], DELIVERED)
        now = time.time()
        for q in done:
            self.d.metrics.latency.labels(self.name).observe(max(0.0, now - q.entry.received_at))
            self._forget(q, "delivered" if how == "delivered" else "skipped")

    def _forget(self, q: Queued, outcome: str) -> None:
        self.queue.pop(q.entry.id, None)
        self.d.metrics.notifications.labels(self.name, outcome).inc()
        self.show_depth()
        log.info(
            "notification %s",
            outcome,
            extra={
                "request_id": q.entry.trace_id,
                "target": self.name,
                "outcome": outcome,
                "alerts": len(q.notification.alerts),
                "attempts": q.entry.attempts,
            },
        )

    def _backoff(self, answer: Answer | None) -> float:
        """Exponential backoff with full jitter; a server hint is a floor."""
        self.failures += 1
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (self.failures - 1)))
        if answer is not None and answer.retry_after:
            delay = max(delay, min(answer.retry_after, BACKOFF_CAP))
        self.retry_at = time.monotonic() + delay
        return delay

    async def _retry_later(self, items: list[Queued], card: Card, answer: Answer) -> None:
        delay = self._backoff(answer)
        max_age = self.d.config.delivery.max_retry_age
        now = time.time()
        affected = [q for q in items if q.entry.id in card.covers]
        expired = [q for q in affected if now - q.entry.received_at > max_age]
        await self.d.outbox.attempted([q.entry.id for q in affected], answer.message)
        for q in affected:
            q.entry.attempts += 1
        self.d.metrics.notifications.labels(self.name, "failed").inc(len(affected))
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
        await self.d.outbox.finish([q.entry.id for q in items], DEAD, why)
        for q in items:
            await self.d.dedup.forget(q.entry.dedup_key)  # a replay or a resend must get through
            self._forget(q, "dead")
