"""Where shared state lives: embedded (SQLite outbox, in-process dedup and limits)
or Redis (§7: several replicas share outbox, dedup and the per-bot rate limit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amfeishu.dedup import Dedup, DedupWindow
from amfeishu.outbox import Outbox, open_outbox
from amfeishu.ratelimit import Limiter, SlidingWindowLimiter
from amfeishu.settings import Config, RateLimit

LimiterFactory = Callable[[str, RateLimit], Limiter]  # (bot webhook, limits) → limiter


@dataclass
class Backend:
    outbox: Outbox
    dedup: Dedup
    limiter: LimiterFactory
    shared: bool = False  # True: replicas claim work from the outbox (`Outbox.claim`)


def _local_limiter(bot: str, rate: RateLimit) -> Limiter:
    del bot  # one process: the dispatcher keeps one limiter per bot
    return SlidingWindowLimiter(rate.per_second, rate.per_minute)


def open_backend(config: Config) -> Backend:
    if config.storage.redis_url is not None:
        from amfeishu.redis_backend import redis_backend

        return redis_backend(config)
    return Backend(
        outbox=open_outbox(config.storage.path),
        dedup=DedupWindow(config.dedup.ttl, config.dedup.max_entries),
        limiter=_local_limiter,
    )
