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

from cachetools import TTLCache

from amfeishu.backend.base import Backend, Entry, StorageError
from amfeishu.config.types import Target
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.generation import Generation
from amfeishu.metrics import Metrics
from amfeishu.ratelimit import Limiter
from amfeishu.sinks import PreviewSink, Sink, WebhookSink
from amfeishu.worker import MAX_IN_MEMORY, Clock, Needs, RecentCard, TargetWorker

log = logging.getLogger("amfeishu.delivery")
POLL_INTERVAL = 2.0  # how often replayed dead letters are picked up from storage
PURGE_AFTER = 86400.0  # delivered rows kept this long (at least the dedup ttl)


class Dispatcher:
    def __init__(
        self,
        generation: Callable[[], Generation],
        backend: Backend,
        client: FeishuClient,
        metrics: Metrics,
        clock: Clock | None = None,
    ) -> None:
        self.generation = generation
        self.backend = backend
        self.outbox = backend.outbox
        self.client = client
        self.metrics = metrics
        self.recent_cards: deque[RecentCard] = deque(maxlen=50)
        self.stopping = False
        self._needs = Needs(
            outbox=backend.outbox,
            dedup=backend.dedup,
            metrics=metrics,
            generation=generation,
            sink_for=self.sink_for,
            recent=self.recent_cards,
            clock=clock or Clock(),
            stopping=lambda: self.stopping,
        )
        self._limiters: dict[str, Limiter] = {}
        self._workers: dict[str, TargetWorker] = {}
        self._seen: TTLCache[tuple[int, float], bool] = TTLCache(maxsize=1_000_000, ttl=7 * 86400)
        self._tasks: list[asyncio.Task[None]] = []

    def sink_for(self, target: Target) -> Sink:
        if target.webhook is None:
            return PreviewSink(target.name)
        return WebhookSink(self.client, target.webhook, target.secret, self._limiter(target))

    def _limiter(self, target: Target) -> Limiter:
        """Shared by every target that posts to the same bot: Feishu limits per bot."""
        bot = target.webhook.get() if target.webhook else target.name
        key = f"{bot}|{target.rate_limit}"
        if key not in self._limiters:
            self._limiters[key] = self.backend.limiter(bot, target.rate_limit)
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
        """Shared outbox: claim new entries, and those a dead replica left behind."""
        while not self.stopping:
            try:
                entries = await self.outbox.claim(list(self.generation().config.targets))
            except StorageError as exc:
                log.error("cannot read the shared outbox: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.submit(entries)

    def submit(self, entries: list[Entry], *, from_storage: bool = False) -> None:
        targets = self.generation().config.targets
        for entry in entries:
            seen = (entry.id, entry.received_at)
            if seen in self._seen:
                continue
            if entry.target not in targets:
                self._seen[seen] = True
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
            self._seen[seen] = True
            worker.add(entry)

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
        for entry_id, received, target in await self.outbox.pending_refs():  # oldest first
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
            self.submit(await self.outbox.by_ids(wanted), from_storage=True)

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
