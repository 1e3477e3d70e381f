"""What replicas share through Redis besides the outbox (DESIGN §7): the connection, the
dedup window, the per-bot rate limit and the per-target leases.

Everything that must hold across replicas (a slot under Feishu's limit, a lease) is
decided by one Lua script on the server, with the server's clock: replicas' clocks may
disagree, Redis's TIME does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import socket
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from amfeishu.outbox import OutboxError
from amfeishu.ratelimit import WINDOW_MARGIN

PREFIX = "amfeishu:"
LEASE_MS = 10_000  # a dead replica's targets move to another within this


def consumer_name() -> str:
    """This replica, as the outbox consumer and lease holder: unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Link:
    """One redis.asyncio client for outbox, dedup, limits and leases.

    Every Redis error becomes OutboxError naming the server, never the password.
    A command fails fast (one quick retry, then the error): the receiver answers 503
    and Alertmanager retries, rather than holding its request while Redis is away.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        self.where = f"{parts.scheme}://{hosts}{parts.path}"  # no credentials, no query
        given = [parts.password or "", *parse_qs(parts.query).get("password", [])]
        self._secrets = sorted({s for p in given for s in (p, unquote(p)) if s}, key=len)[::-1]
        self._sentinels: list[Redis] = []  # with redis+sentinel://: connections to them
        try:
            self.client = _client(url, self._sentinels)
        except ValueError as exc:  # a malformed URL: redis-py names the part
            raise OutboxError(self.describe(exc)) from None

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise OutboxError(self.describe(exc)) from None

    def describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "<secret>")
        return f"redis at {self.where}: {text}"

    def script(self, source: str) -> Any:
        return self.client.register_script(source.replace("$P", PREFIX))

    async def aclose(self) -> None:
        for client in [self.client, *self._sentinels]:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


def _client(url: str, sentinels: list[Redis]) -> Redis:
    options: dict[str, Any] = {
        "decode_responses": True,
        "protocol": 2,
        "socket_timeout": 3.0,  # more than the 1 s XREADGROUP block
        "socket_connect_timeout": 2.0,
        "health_check_interval": 30,
        # once more on a fresh connection (a pooled one may predate a Redis restart)
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":  # redis://, rediss:// (TLS), unix://
        return Redis.from_url(url, **options)
    # redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]
    hosts = parts.netloc.rpartition("@")[2]
    nodes = [(h.partition(":")[0], int(h.partition(":")[2] or 26379)) for h in hosts.split(",")]
    service, _, db = parts.path.strip("/").partition("/")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sentinel = Sentinel(
        nodes,
        sentinel_kwargs={k: v for k, v in options.items() if k.startswith("socket_")},
        **options,
    )
    sentinels += sentinel.sentinels
    return sentinel.master_for(
        service,
        username=unquote(parts.username or "") or None,
        password=unquote(parts.password or "") or None,
        db=int(db or query.get("db", 0)),
    )


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
            return bool(await self._first(keys=[PREFIX + "dedup:" + key], args=args))

    async def remember(self, key: str) -> None:
        if self.enabled:  # NX: an earlier mark keeps its entry and expiry
            with self.link.errors():
                await self.link.client.set(PREFIX + "dedup:" + key, "", nx=True, px=self._ttl_ms)

    async def forget(self, key: str) -> None:
        with self.link.errors():
            await self.link.client.delete(PREFIX + "dedup:" + key)


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
        self.key = PREFIX + "rate:" + hashlib.sha256(bot.encode()).hexdigest()
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


# Leases, spread evenly over the live replicas. KEYS[1] the replicas' heartbeats (ZSET),
# KEYS[2..] one lease per target; ARGV[1] me, ARGV[2] ttl ms, ARGV[3..] per target '1'
# when this replica has nothing of it in flight (the lease may move). Returns per target
# 0 not ours, 1 ours (renewed), 2 newly ours.
_LEASE = """
local me, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
local share = math.ceil((#KEYS - 1) / redis.call('ZCARD', KEYS[1]))
local holders, held = {}, 0
for i = 2, #KEYS do
  holders[i] = redis.call('GET', KEYS[i])
  if holders[i] == me then held = held + 1 end
end
local out = {}
for i = 2, #KEYS do
  out[i - 1] = 0
  if holders[i] == me then
    if held > share and ARGV[i + 1] == '1' then
      redis.call('DEL', KEYS[i])
      held = held - 1
    else
      redis.call('PEXPIRE', KEYS[i], ttl)
      out[i - 1] = 1
    end
  elseif not holders[i] and held < share then
    redis.call('SET', KEYS[i], me, 'PX', ttl)
    held = held + 1
    out[i - 1] = 2
  end
end
return out
"""
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""


class Leases:
    """Which targets this replica works on. One holder per target keeps a storm's grouping
    window in one process; a dead holder's lease expires and another replica takes it."""

    def __init__(self, link: Link, me: str, ttl_ms: int = LEASE_MS) -> None:
        self.link = link
        self.me = me
        self.ttl_ms = ttl_ms
        self.held: set[str] = set()
        self._lease = link.script(_LEASE)
        self._release = link.script(_RELEASE)

    @staticmethod
    def key(target: str) -> str:
        return PREFIX + "lease:" + target

    async def renew(self, targets: list[str], busy: set[str]) -> list[str]:
        """Renew, take or hand over leases; returns the targets newly ours."""
        keys = [PREFIX + "replicas", *(self.key(t) for t in targets)]
        args = [self.me, str(self.ttl_ms), *("0" if t in busy else "1" for t in targets)]
        with self.link.errors():
            states = await self._lease(keys=keys, args=args)
        self.held = {t for t, s in zip(targets, states, strict=True) if int(s)}
        return [t for t, s in zip(targets, states, strict=True) if int(s) == 2]

    async def release(self) -> None:
        keys = [PREFIX + "replicas", *(self.key(t) for t in sorted(self.held))]
        self.held = set()
        with self.link.errors():
            await self._release(keys=keys, args=[self.me])
