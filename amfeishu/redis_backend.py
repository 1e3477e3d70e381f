"""The Redis backend (DESIGN §7): with `storage.redis_url` set, replicas share the outbox
(redis_outbox), the dedup window, the per-bot rate limit and the per-target leases
(redis_shared) through one connection."""

from __future__ import annotations

from amfeishu.backends import Backend
from amfeishu.reader import ConfigError
from amfeishu.settings import Config, RateLimit

try:
    from amfeishu.redis_outbox import RedisOutbox
    from amfeishu.redis_shared import Link, RedisDedup, RedisLimiter
except ImportError as exc:  # the optional dependency
    raise ConfigError(
        [f"storage.redis_url: needs the redis package (pip install 'amfeishu[redis]'): {exc}"]
    ) from None


def redis_backend(config: Config) -> Backend:
    if config.storage.redis_url is None:
        raise ConfigError(["storage.redis_url: not set"], config.source)
    link = Link(config.storage.redis_url.get())
    # A claimed entry unacknowledged this long belongs to a replica that died.
    reclaim_after = max(30.0, 3 * config.delivery.timeout)

    def limiter(bot: str, rate: RateLimit) -> RedisLimiter:
        return RedisLimiter(link, bot, rate.per_second, rate.per_minute)

    return Backend(
        outbox=RedisOutbox(link, reclaim_after=reclaim_after),
        dedup=RedisDedup(link, config.dedup.ttl),
        limiter=limiter,
        shared=True,
    )
