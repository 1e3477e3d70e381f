"""Per-target leases on Redis: which replica reads which target's stream.

One holder per target keeps a storm's grouping window in one process; leases
spread evenly over the live replicas, and a dead holder's lease expires so
another replica takes it.
"""

from __future__ import annotations

from amfeishu.backend.redis_link import REPLICAS, Link, lease_key

LEASE_MS = 10_000  # a dead replica's targets move to another within this

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

    async def renew(self, targets: list[str], busy: set[str]) -> list[str]:
        """Renew, take or hand over leases; returns the targets newly ours."""
        keys = [REPLICAS, *(lease_key(t) for t in targets)]
        args = [self.me, str(self.ttl_ms), *("0" if t in busy else "1" for t in targets)]
        with self.link.errors():
            states = await self._lease(keys=keys, args=args)
        self.held = {t for t, s in zip(targets, states, strict=True) if int(s)}
        return [t for t, s in zip(targets, states, strict=True) if int(s) == 2]

    async def release(self) -> None:
        keys = [REPLICAS, *(lease_key(t) for t in sorted(self.held))]
        self.held = set()
        with self.link.errors():
            await self._release(keys=keys, args=[self.me])
