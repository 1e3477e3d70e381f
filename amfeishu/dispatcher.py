"""The fleet: one worker per target, the intake that feeds them, and housekeeping.

Intake is local or shared. Local: the receiver hands over what it stored,
and what waits in storage (a previous run's, replayed dead letters, a
worker's overflow) is read back oldest first. Shared (Redis): replicas claim
their entries from the shared outbox. The dispatcher is also the one place
that knows which sink a target delivers to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from amfeishu.backend.base import PENDING, Backend, Entry, StorageError
from amfeishu.backend.cards import CardRegistry, MemoryCards
from amfeishu.config.types import AppDelivery, Config, RateLimit, Target
from amfeishu.feishu.openapi import FeishuApp
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.generation import Generation
from amfeishu.metrics import Metrics
from amfeishu.ratelimit import AllOf, Limiter
from amfeishu.sinks import AppSink, PreviewSink, Sink, WebhookSink
from amfeishu.worker import MAX_IN_MEMORY, Clock, Needs, RecentCard, TargetWorker

log = logging.getLogger("amfeishu.delivery")
POLL_INTERVAL = 2.0  # how often replayed dead letters are picked up from storage
PURGE_AFTER = 86400.0  # delivered rows kept this long (at least the dedup ttl)
APP_RATE = RateLimit(per_second=50, per_minute=1000)  # per Feishu app, all its targets


class Dispatcher:
    def __init__(
        self,
        generation: Callable[[], Generation],
        backend: Backend,
        client: FeishuClient,
        metrics: Metrics,
        clock: Clock | None = None,
        cards: CardRegistry | None = None,
    ) -> None:
        self.generation = generation
        self.backend = backend
        self.outbox = backend.outbox
        self.client = client
        self.metrics = metrics
        self.recent_cards: deque[RecentCard] = deque(maxlen=50)
        self.stopping = False
        self.cards = cards or MemoryCards()
        self._apps: dict[tuple[str, str, str], FeishuApp] = {}
        self._needs = Needs(
            outbox=backend.outbox,
            dedup=backend.dedup,
            metrics=metrics,
            generation=generation,
            sink_for=self.sink_for,
            recent=self.recent_cards,
            clock=clock or Clock(),
            stopping=lambda: self.stopping,
            cards=self.cards,
        )
        self._limiters: dict[str, Limiter] = {}
        self._workers: dict[str, TargetWorker] = {}
        # Pending entries left in the outbox: of no configured target (warned once; a reload
        # may bring the target back), or unreadable (logged once).
        self._warned: set[int] = set()
        self._unreadable: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def sink_for(self, target: Target, config: Config) -> Sink:
        if target.app is not None:
            return self._app_sink(target, target.app, config)
        if target.webhook is None:
            return PreviewSink(target.name)
        return WebhookSink(self.client, target.webhook, target.secret, self._limiter(target))

    def _app_sink(self, target: Target, delivery: AppDelivery, config: Config) -> Sink:
        app = config.apps[delivery.app]  # the batch's config, which checked that it exists
        key = (app.app_id, app.app_secret.get(), app.base_url)
        client = self._apps.get(key)
        if client is None:
            refreshes = self.metrics.token_refreshes

            def counted(ok: bool, name: str = app.name) -> None:
                refreshes.labels(name, "ok" if ok else "failed").inc()

            client = FeishuApp(
                app.app_id,
                app.app_secret.get(),
                app.base_url,
                timeout=config.delivery.timeout,
                on_token_fetch=counted,
            )
            self._apps[key] = client
        # Feishu limits sends per chat or person (5/s, whoever sends) and per app (50/s and
        # 1,000/min): https://open.feishu.cn/document/server-docs/im-v1/message/create
        receiver = f"app:{app.app_id}:{delivery.receive_id_type}:{delivery.receive_id}"
        limiter = AllOf(
            self._limiter_for(receiver, target.rate_limit),
            self._limiter_for(f"app:{app.app_id}", APP_RATE),
        )
        updates = self.metrics.card_updates
        return AppSink(
            client,
            delivery,
            target.name,
            self.cards,
            limiter,
            delivery_language="en" if target.language == "en" else "zh",
            on_update=lambda result: updates.labels(target.name, result).inc(),
        )

    def _limiter(self, target: Target) -> Limiter:
        """Shared by every target that posts to the same bot: Feishu limits per bot."""
        bot = target.webhook.get() if target.webhook else target.name
        return self._limiter_for(bot, target.rate_limit)

    def _limiter_for(self, bot: str, rate: RateLimit) -> Limiter:
        key = f"{bot}|{rate}"
        if key not in self._limiters:
            self._limiters[key] = self.backend.limiter(bot, rate)
        return self._limiters[key]

    def worker(self, name: str) -> TargetWorker:
        worker = self._workers.get(name)
        if worker is None or (worker.task is not None and worker.task.done()):
            # new, or removed by an earlier reload and now back
            pending = worker.queue if worker is not None else {}
            worker = self._workers[name] = TargetWorker(name, self._needs)
            worker.queue.update(pending)
            worker.task = asyncio.get_running_loop().create_task(worker.run())
        return worker

    def reconcile(self) -> None:
        """After a reload: every configured target has a live worker."""
        self._warned.clear()  # their targets may be back: read them again
        for name in self.generation().config.targets:
            self.worker(name)

    async def start(self) -> None:
        config = self.generation().config
        for entry in await self.outbox.recent(time.time() - config.dedup.ttl):
            await self.backend.dedup.remember(entry.dedup_key)
        self.reconcile()
        loop = asyncio.get_running_loop()
        if self.backend.shared:  # replicas take their work from the shared outbox
            self._tasks.append(loop.create_task(self._consume()))
        else:
            await self._pick_up_stored()  # what a previous run left pending
        self._tasks.append(loop.create_task(self._housekeeping()))

    async def _consume(self) -> None:
        """Shared outbox: claim new entries, and those a dead replica left behind, while
        the workers have room: each holds a bounded window, as with a local outbox."""
        while not self.stopping:
            targets = list(self.generation().config.targets)
            room = {t: max(0, MAX_IN_MEMORY - len(self.worker(t).queue)) for t in targets}
            try:
                entries = await self.outbox.claim(targets, room)
            except StorageError as exc:
                log.error("cannot read the shared outbox: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.submit(entries)

    def _held(self, entry: Entry) -> bool:
        worker = self._workers.get(entry.target)
        return worker is not None and entry.id in worker.queue

    def submit(self, entries: list[Entry], *, from_storage: bool = False) -> None:
        targets = self.generation().config.targets
        for entry in entries:
            # Finished since it was listed, or with its worker already (read back while
            # it was being queued, or handed out again by a shared outbox): never twice.
            if entry.state != PENDING or self._held(entry) or entry.id in self._unreadable:
                continue
            if entry.target not in targets:
                if entry.id not in self._warned:
                    self._warned.add(entry.id)
                    log.warning(
                        "pending notification for unknown target kept in the outbox",
                        extra={"request_id": entry.trace_id, "target": entry.target},
                    )
                continue
            worker = self.worker(entry.target)
            if not self.backend.shared and not from_storage and worker.full:
                # Held in memory is a bounded window; the rest waits in the outbox
                # and is read back, oldest first, as the worker drains.
                worker.overflow = True
                worker.stored += 1
                continue
            worker.add(entry)
            if entry.id not in worker.queue:  # unreadable (logged): left in the outbox
                self._unreadable.add(entry.id)

    async def _housekeeping(self) -> None:
        """Picks up replayed dead letters, refreshes gauges, forgets old deliveries."""
        last_purge = 0.0
        while not self.stopping:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                if not self.backend.shared:  # replays land in storage; pick them up
                    await self._pick_up_stored()
                dead = await self.outbox.dead()
                for name in self._workers:
                    self.metrics.dead_letters.labels(name).set(sum(e.target == name for e in dead))
                if time.time() - last_purge > 600:
                    last_purge = time.time()
                    ttl = self.generation().config.dedup.ttl
                    await self.outbox.purge(time.time() - max(PURGE_AFTER, ttl))
            except StorageError as exc:
                log.error("outbox housekeeping failed: %s", exc)

    async def _pick_up_stored(self) -> None:
        """Pending rows not in memory: replays, a previous run's, or a worker's overflow."""
        unknown: dict[str, list[int]] = {}
        skip = self._unreadable | self._warned
        for entry_id, _, target in await self.outbox.pending_refs():  # oldest first
            worker = self._workers.get(target)
            if (worker is None or entry_id not in worker.queue) and entry_id not in skip:
                unknown.setdefault(target, []).append(entry_id)
        wanted: list[int] = []
        for name, worker in self._workers.items():
            ids = unknown.get(name, [])
            room = max(0, MAX_IN_MEMORY - len(worker.queue))
            wanted += ids[:room]
            worker.stored = max(0, len(ids) - room)
            worker.overflow = worker.stored > 0
        wanted += [i for name, ids in unknown.items() if name not in self._workers for i in ids]
        if wanted:
            self.submit(await self.outbox.by_ids(wanted), from_storage=True)

    def depth(self) -> int:
        return sum(len(w.queue) for w in self._workers.values())

    async def stop(self, grace: float) -> None:
        """Finish in-flight sends within `grace` seconds; the rest stays pending."""
        self.stopping = True
        for task in self._tasks:  # housekeeping holds nothing in flight
            task.cancel()
        for worker in self._workers.values():
            worker.stop()
        tasks = [w.task for w in self._workers.values() if w.task]
        _, running = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for task in running:
            task.cancel()
        for task in [*running, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._apps.values():
            await client.aclose()
