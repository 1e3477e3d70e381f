"""The dedup window and Feishu's per-bot rate limit, shared by every replica through Redis.

Each decision is one Lua script on the server, with the server's clock.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable

from amfeishu.backend.redis_link import Link, dedup_key, rate_key
from amfeishu.ratelimit import WINDOW_MARGIN

# KEYS[1] the mark; ARGV[1] who asks (an outbox entry id), ARGV[2] ttl ms. 1: first time.
_FIRST = """
local mark = redis.call('GET', KEYS[1])
if not mark then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if mark == ARGV[1] and ARGV[1] ~= '' then return 1 end
return 0
"""


class RedisDedup:
    """`amfeishu:dedup:<key>` → the entry id that came first, expiring after the ttl.

    The first replica to mark a key wins. The mark names its entry: when a replica dies
    after marking an entry but before sending it, the replica that takes the entry over
    meets the entry's own mark and sends it, while a true duplicate is still dropped.
    """

    def __init__(self, link: Link, ttl: float) -> None:
        self.link = link
        self.enabled = ttl > 0
        self._ttl_ms = max(1, int(ttl * 1000))
        self._first = link.script(_FIRST)

    async def first_time(self, key: str, entry: int | None = None) -> bool:
        if not self.enabled:
            return True
        args = ["" if entry is None else str(entry), str(self._ttl_ms)]
        with self.link.errors():
            return bool(await self._first(keys=[dedup_key(key)], args=args))

    async def remember(self, key: str) -> None:
        if self.enabled:  # NX: an earlier mark keeps its entry and expiry
            with self.link.errors():
                await self.link.client.set(dedup_key(key), "", nx=True, px=self._ttl_ms)

    async def forget(self, key: str) -> None:
        with self.link.errors():
            await self.link.client.delete(dedup_key(key))


# The sliding log of SlidingWindowLimiter, atomically, on the server's clock (microseconds).
# KEYS[1] the bot's log (ZSET member → send time); ARGV[1] '1' = take the slot when free,
# ARGV[2] a unique member; ARGV[3..] window_us, limit pairs. Returns 0 (free; taken when
# asked) or the milliseconds to wait.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local horizon = 0
for i = 3, #ARGV, 2 do horizon = math.max(horizon, tonumber(ARGV[i])) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - horizon))
local wait = 0
for i = 3, #ARGV, 2 do
  local window, limit = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if limit > 0 then
    local since = '(' .. string.format('%.0f', now - window)
    local kth = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', since, 'WITHSCORES',
                           'LIMIT', limit - 1, 1)
    if #kth > 0 then wait = math.max(wait, tonumber(kth[2]) + window - now) end
  end
end
if wait > 0 then return math.ceil(wait / 1000) end
if ARGV[1] == '1' then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(horizon / 1000))
end
return 0
"""


class RedisLimiter:
    """Feishu's per-bot limit shared by every replica; keyed by a hash of the webhook URL."""

    def __init__(self, link: Link, bot: str, per_second: float, per_minute: float) -> None:
        self.link = link
        self.key = rate_key(bot)
        windows = [(1.0 * WINDOW_MARGIN, int(per_second)), (60.0 + 1.0, int(per_minute))]
        self._windows = [str(x) for w, n in windows for x in (round(w * 1_000_000), n)]
        self._script = link.script(_RATE)
        self._me = secrets.token_hex(6)
        self._sent = 0
        self._lock = asyncio.Lock()
        self._answer_script = link.script(_ANSWERED)
        self._open: deque[str] = deque()  # slots taken whose request awaits its answer

    async def delay(self, take: bool = False) -> float:
        """Seconds until a send stays within every window (0 = now, and taken if `take`)."""
        self._sent += 1
        args = ["1" if take else "0", f"{self._me}-{self._sent}", *self._windows]
        with self.link.errors():
            return int(await self._script(keys=[self.key], args=args)) / 1000

    async def wait(self) -> None:
        """Wait until a send would be allowed, without taking the slot."""
        while (pause := await self.delay()) > 0:
            await asyncio.sleep(pause)

    async def acquire(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while (pause := await self.delay(take=True)) > 0:
                if on_wait is not None:
                    on_wait(pause)
                await asyncio.sleep(pause)
                waited += pause
            self._open.append(f"{self._me}-{self._sent}")
        return waited

    async def sent(self) -> None:
        """The oldest open request was answered: its slot counts from now (see
        SlidingWindowLimiter.sent), however late the replica got to send it."""
        if self._open:
            member = self._open.popleft()
            with self.link.errors():
                await self._answer_script(keys=[self.key], args=[member])


# A taken slot's time moves to the answer's (server clock); XX: never re-adds a pruned one.
_ANSWERED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now), ARGV[1])
return 0
"""
