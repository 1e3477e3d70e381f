"""open_backend(config): the one place that picks a store and imports its implementation.

Embedded (SQLite outbox, or ":memory:" on request; dedup and limits in
process), or Redis with `storage.redis_url`, where replicas share outbox,
dedup and the per-bot limit (docs/scaling.md). A missing redis package is a
config error here, at open, never an ImportError elsewhere.
"""

from __future__ import annotations

from amfeishu.backend.base import Backend, Outbox
from amfeishu.backend.cards import CardRegistry, MemoryCards, SQLiteCards
from amfeishu.backend.memory import MemoryOutbox
from amfeishu.backend.sqlite import SQLiteOutbox
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import Config, RateLimit
from amfeishu.dedup import DedupWindow
from amfeishu.ratelimit import Limiter, SlidingWindowLimiter


def open_backend(config: Config) -> Backend:
    if config.storage.redis_url is not None:
        return _redis_backend(config)
    return Backend(
        outbox=open_outbox(config.storage.path),
        dedup=DedupWindow(config.dedup.ttl, config.dedup.max_entries),
        limiter=_local_limiter,
    )


def open_cards(config: Config) -> CardRegistry:
    """Where app targets keep their cards: beside the outbox, in the same store."""
    if config.storage.redis_url is not None:
        from amfeishu.backend.redis_cards import RedisCards
        from amfeishu.backend.redis_link import Link

        return RedisCards(Link(config.storage.redis_url.get()))
    path = config.storage.path
    return MemoryCards() if path == ":memory:" else SQLiteCards(path)


def open_outbox(path: str) -> Outbox:
    return MemoryOutbox() if path == ":memory:" else SQLiteOutbox(path)


def _local_limiter(bot: str, rate: RateLimit) -> Limiter:
    del bot  # one process: the dispatcher keeps one limiter per bot
    return SlidingWindowLimiter(rate.per_second, rate.per_minute)


def _redis_backend(config: Config) -> Backend:
    try:
        from amfeishu.backend.redis_limits import RedisDedup, RedisLimiter
        from amfeishu.backend.redis_link import Link
        from amfeishu.backend.redis_outbox import RedisOutbox
    except ImportError as exc:  # the optional dependency
        raise ConfigError(
            [f"storage.redis_url: needs the redis package (pip install 'amfeishu[redis]'): {exc}"],
            config.source,
        ) from None
    assert config.storage.redis_url is not None  # checked by the caller
    link = Link(config.storage.redis_url.get())
    # A claimed entry unacknowledged this long belongs to a replica that died.
    reclaim_after = max(30.0, 3 * config.delivery.timeout)

    def limiter(bot: str, rate: RateLimit) -> Limiter:
        return RedisLimiter(link, bot, rate.per_second, rate.per_minute)

    return Backend(
        outbox=RedisOutbox(link, reclaim_after=reclaim_after),
        dedup=RedisDedup(link, config.dedup.ttl),
        limiter=limiter,
        shared=True,
    )
