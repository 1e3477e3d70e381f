"""The outbox replicas share: a Redis Stream per target read through one consumer
group, so each entry goes to one replica, and what a dead replica had claimed goes to
another. Keys: backend/redis_link.py.

The stream carries only the id: payload and state live in the hash, so `finish`,
`attempted` and `revive` are one script each, atomic, one round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from redis.exceptions import RedisError, ResponseError

from amfeishu.backend.base import DEAD, PENDING, Entry, NewEntry, StorageError
from amfeishu.backend.redis_leases import LEASE_MS, Leases
from amfeishu.backend.redis_link import (
    Link,
    consumer_name,
    entry_key,
    index_key,
    stream_key,
)

log = logging.getLogger("amfeishu.outbox")
GROUP = "amfeishu"
BLOCK_MS = 1000  # XREADGROUP waits this long for new entries
COUNT = 500  # entries per read, per stream
RENEW_EVERY = 1.0  # seconds between lease renewals (leases last LEASE_MS)
PUT_BATCH = 500  # entries per insert script
RECENT_MAX = 10_000

# ARGV[1] now, then target, payload, dedup_key, trace_id per entry; returns the first id.
_PUT = """
local n = (#ARGV - 1) / 4
local first = redis.call('INCRBY', '$Pseq', n) - n + 1
for i = 0, n - 1 do
  local id, target = tostring(first + i), ARGV[2 + 4 * i]
  local sid = redis.call('XADD', '$Poutbox:' .. target, '*', 'id', id)
  redis.call('HSET', '$Pentry:' .. id, 'target', target, 'payload', ARGV[3 + 4 * i],
             'dedup_key', ARGV[4 + 4 * i], 'trace_id', ARGV[5 + 4 * i],
             'received_at', ARGV[1], 'updated_at', ARGV[1], 'state', 'pending',
             'attempts', 0, 'sid', sid)
  redis.call('ZADD', '$Ppending', id, id)
end
return first
"""
# ARGV[1] state, ARGV[2] error ('' = keep), ARGV[3] now, ARGV[4..] ids.
_FINISH = """
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = '$Pentry:' .. id
  local f = redis.call('HMGET', key, 'target', 'sid', 'state')
  if f[3] == 'pending' then
    local stream = '$Poutbox:' .. f[1]
    redis.pcall('XACK', stream, 'amfeishu', f[2])  -- no group yet: never claimed
    redis.call('XDEL', stream, f[2])
    redis.call('ZREM', '$Ppending', id)
    redis.call('HSET', key, 'state', ARGV[1], 'updated_at', ARGV[3])
    if ARGV[2] ~= '' then redis.call('HSET', key, 'last_error', ARGV[2]) end
    if ARGV[1] == 'dead' then
      redis.call('ZADD', '$Pdead', id, id)
    else
      redis.call('HDEL', key, 'payload')
      redis.call('ZADD', '$Pdone', ARGV[3], id)
    end
  end
end
return 0
"""
# ARGV[1] error, ARGV[2] now, ARGV[3..] ids.
_ATTEMPTED = """
for i = 3, #ARGV do
  local key = '$Pentry:' .. ARGV[i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'last_error', ARGV[1], 'updated_at', ARGV[2])
  end
end
return 0
"""
# ARGV[1] now, ARGV[2] 'all' or 'ids', ARGV[3..] ids. A new stream entry for each.
_REVIVE = """
local ids = {}
if ARGV[2] == 'all' then ids = redis.call('ZRANGE', '$Pdead', 0, -1) end
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local n = 0
for _, id in ipairs(ids) do
  local key = '$Pentry:' .. id
  local target = redis.call('HGET', key, 'target')
  if redis.call('ZREM', '$Pdead', id) == 1 and target then
    local sid = redis.call('XADD', '$Poutbox:' .. target, '*', 'id', id)
    redis.call('HSET', key, 'state', 'pending', 'attempts', 0, 'received_at', ARGV[1],
               'updated_at', ARGV[1], 'sid', sid)
    redis.call('ZADD', '$Ppending', id, id)
    n = n + 1
  end
end
return n
"""
# ARGV[1] before, ARGV[2] how many at most.
_PURGE = """
local ids = redis.call('ZRANGEBYSCORE', '$Pdone', '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('DEL', '$Pentry:' .. id)
  redis.call('ZREM', '$Pdone', id)
end
return #ids
"""
# KEYS[1] a stream; ARGV[1] idle ms: forget consumers (replicas gone) with nothing pending.
_FORGET_CONSUMERS = """
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], 'amfeishu')
if consumers.err then return 0 end
local gone = 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[1]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'amfeishu', f['name'])
    gone = gone + 1
  end
end
return gone
"""


def _entry(entry_id: str, row: dict[str, str]) -> Entry | None:
    if not row:
        return None
    try:
        return Entry(
            int(entry_id),
            row["target"],
            (row.get("payload") or "{}").encode(),
            row["dedup_key"],
            row["trace_id"],
            float(row["received_at"]),
            row["state"],
            int(row["attempts"]),
            row.get("last_error"),
            float(row["updated_at"]),
        )
    except (KeyError, ValueError) as exc:
        log.error("unreadable outbox entry %s in Redis: %s", entry_id, exc)
        return None


class RedisOutbox:
    def __init__(
        self,
        link: Link,
        *,
        reclaim_after: float = 30.0,
        lease_ms: int = LEASE_MS,
        forget_consumers_after: float = 3600.0,
    ) -> None:
        self.link = link
        self.consumer = consumer_name()
        self.leases = Leases(link, self.consumer, lease_ms)
        self.reclaim_after = reclaim_after  # claimed this long ago and not acknowledged
        self.forget_consumers_after = forget_consumers_after
        self._put, self._finish = link.script(_PUT), link.script(_FINISH)
        self._attempted, self._revive = link.script(_ATTEMPTED), link.script(_REVIVE)
        self._purge, self._forget = link.script(_PURGE), link.script(_FORGET_CONSUMERS)
        self._groups: set[str] = set()  # targets whose consumer group exists
        self._inflight: dict[int, str] = {}  # claimed here, not finished: id → target
        self._renew_at = self._reclaim_at = 0.0
        self._batch: list[tuple[list[NewEntry], asyncio.Future[list[Entry]]]] = []
        self._flush_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.check()

    async def close(self) -> None:
        if self._flush_task is not None:
            await asyncio.gather(self._flush_task, return_exceptions=True)
        try:
            await self.leases.release()  # another replica takes over at once
        except StorageError as exc:
            log.warning("could not release leases (they expire by themselves): %s", exc)
        await self.link.aclose()

    async def check(self) -> None:
        with self.link.errors():
            await self.link.client.ping()

    async def put(self, items: list[NewEntry]) -> list[Entry]:
        """Stored when it returns. Concurrent callers share one script call."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Entry]] = loop.create_future()
        self._batch.append((items, future))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._batch:
            await asyncio.sleep(0)  # let the rest of this tick's requests join
            batch, self._batch = self._batch, []
            try:
                entries = await self._insert([i for items, _ in batch for i in items])
            except Exception as exc:  # every waiter learns of it and answers 503
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StorageError(str(exc)))
                continue
            start = 0
            for items, future in batch:
                if not future.done():
                    future.set_result(entries[start : start + len(items)])
                start += len(items)

    async def _insert(self, items: list[NewEntry]) -> list[Entry]:
        now = time.time()
        entries: list[Entry] = []
        for at in range(0, len(items), PUT_BATCH):
            chunk = items[at : at + PUT_BATCH]
            args: list[Any] = [repr(now)]
            bodies = [item.body for item in chunk]  # stored as received
            for item, body in zip(chunk, bodies, strict=True):
                args += [item.target, body, item.dedup_key, item.trace_id]
            with self.link.errors():
                first = int(await self._put(args=args))
            entries += [
                Entry(
                    first + k,
                    i.target,
                    body,
                    i.dedup_key,
                    i.trace_id,
                    now,
                    updated_at=now,
                    alerts=i.alerts,
                )
                for k, (i, body) in enumerate(zip(chunk, bodies, strict=True))
            ]
        return entries

    async def _fetch(self, ids: list[str]) -> list[tuple[str, dict[str, str]]]:
        if not ids:
            return []
        with self.link.errors():
            async with self.link.client.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hgetall(entry_key(i))
                rows = await pipe.execute()
        return list(zip(ids, rows, strict=True))

    async def _listed(self, index: str, state: str, target: str | None) -> list[Entry]:
        with self.link.errors():
            ids = cast(list[str], await self.link.client.zrange(index_key(index), 0, -1))
        entries = [_entry(i, row) for i, row in await self._fetch(ids)]
        return [e for e in entries if e and e.state == state and target in (None, e.target)]

    async def pending(self, target: str | None = None) -> list[Entry]:
        return await self._listed("pending", PENDING, target)

    async def dead(self, target: str | None = None) -> list[Entry]:
        return await self._listed("dead", DEAD, target)

    async def pending_refs(self) -> list[tuple[int, float, str]]:
        return sorted((e.id, e.received_at, e.target) for e in await self.pending())

    async def by_ids(self, ids: Iterable[int]) -> list[Entry]:
        rows = await self._fetch([str(i) for i in ids])
        return [e for i, row in rows if (e := _entry(i, row)) is not None]

    async def recent(self, since: float) -> list[Entry]:
        with self.link.errors():
            found = await self.link.client.zrevrangebyscore(
                index_key("done"), "+inf", repr(since), start=0, num=RECENT_MAX
            )
        rows = await self._fetch(cast(list[str], found)[::-1])
        return [e for i, row in rows if (e := _entry(i, row)) is not None]

    async def finish(self, ids: Iterable[int], state: str, error: str | None = None) -> None:
        ids = list(ids)
        if ids:
            with self.link.errors():
                await self._finish(args=[state, error or "", repr(time.time()), *ids])
        for i in ids:
            self._inflight.pop(i, None)

    async def attempted(self, ids: Iterable[int], error: str) -> None:
        ids = list(ids)
        if ids:
            with self.link.errors():
                await self._attempted(args=[error, repr(time.time()), *ids])

    async def revive(self, ids: Iterable[int] | None) -> int:
        wanted = [] if ids is None else list(ids)
        if ids is not None and not wanted:
            return 0
        args = [repr(time.time()), "all" if ids is None else "ids", *wanted]
        with self.link.errors():
            return int(await self._revive(args=args))

    async def purge(self, before: float) -> int:
        """Forgets delivered and duplicate entries finished before `before`, and consumers
        (replicas) long gone with nothing pending."""
        purged = 0
        with self.link.errors():
            for _ in range(10_000):  # 1,000 at a time: Redis stays responsive
                n = int(await self._purge(args=[repr(before), 1000]))
                purged += n
                if n < 1000:
                    break
            idle = str(int(self.forget_consumers_after * 1000))
            for target in sorted(self._groups):
                await self._forget(keys=[stream_key(target)], args=[idle])
        return purged

    async def claim(self, targets: list[str], room: Mapping[str, int] | None = None) -> list[Entry]:
        """New entries of the targets whose lease this replica holds, and those another
        consumer claimed and never acknowledged. Blocks up to about a second.

        New entries are read only for targets with room (a worker's window): the rest
        wait in the stream, for this replica later or for another one. Leases are
        renewed for every target all the same: what this replica holds stays its own.
        """
        try:
            return await self._claim(targets, room)
        except StorageError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence)
                self._groups.clear()
            raise
        except (RedisError, OSError, ValueError, KeyError, TypeError) as exc:
            log.exception("claiming from the shared outbox failed")  # must not end the loop
            raise StorageError(self.link.describe(exc)) from None

    async def _claim(self, targets: list[str], room: Mapping[str, int] | None) -> list[Entry]:
        now = time.monotonic()
        fresh: list[str] = []
        if now >= self._renew_at:
            fresh = await self.leases.renew(targets, set(self._inflight.values()))
            self._renew_at = now + RENEW_EVERY
        held = [t for t in targets if t in self.leases.held]
        readable = [t for t in held if room is None or room.get(t, 0) > 0]
        if not readable:
            await asyncio.sleep(max(0.05, self._renew_at - time.monotonic()))
            return []
        await self._ensure_groups(held)
        found: list[tuple[str, str, dict[str, str]]] = []
        for target in fresh:  # newly ours: whatever another replica left unacknowledged
            found += await self._autoclaim(target, 0)
        if now >= self._reclaim_at:
            self._reclaim_at = now + self.reclaim_after / 2
            for target in held:
                found += await self._autoclaim(target, int(self.reclaim_after * 1000))
        if not found:
            block = int(max(0.05, min(BLOCK_MS / 1000, self._renew_at - time.monotonic())) * 1000)
            streams: dict[Any, Any] = {stream_key(t): ">" for t in readable}
            # One COUNT for every stream: the smallest room, so that no window overflows.
            count = min([COUNT, *(room[t] for t in readable)]) if room is not None else COUNT
            with self.link.errors():
                reply = await self.link.client.xreadgroup(
                    GROUP, self.consumer, streams, count=count, block=block
                )
            # decode_responses: [[stream, [(sid, {field: value})]]]
            read = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
            for stream, messages in read:
                found += [(stream[len(stream_key("")) :], sid, f) for sid, f in messages]
        return await self._load(found)

    async def _ensure_groups(self, targets: list[str]) -> None:
        for target in targets:
            if target in self._groups:
                continue
            with self.link.errors():
                try:
                    await self.link.client.xgroup_create(
                        stream_key(target), GROUP, id="0", mkstream=True
                    )
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._groups.add(target)

    async def _autoclaim(self, target: str, idle_ms: int) -> list[tuple[str, str, dict[str, str]]]:
        found, cursor = [], "0-0"
        for _ in range(1000):  # COUNT entries a page
            with self.link.errors():
                reply = await self.link.client.xautoclaim(
                    stream_key(target), GROUP, self.consumer, idle_ms, cursor, count=COUNT
                )
            cursor, messages = reply[0], reply[1]
            found += [(target, sid, f) for sid, f in messages if f]
            if cursor == "0-0":
                break
        return found

    async def _load(self, found: list[tuple[str, str, dict[str, str]]]) -> list[Entry]:
        found = [m for m in found if m[2].get("id")]
        rows = await self._fetch([f["id"] for _, _, f in found])
        entries, stale = [], []
        for (target, sid, _), (entry_id, row) in zip(found, rows, strict=True):
            entry = _entry(entry_id, row)
            if not row or row.get("state") != PENDING or row.get("sid") != sid:
                stale.append((target, sid))  # finished, or revived under a new stream id
            elif entry is not None:
                entries.append(entry)
                self._inflight[entry.id] = target
        if stale:
            with self.link.errors():
                async with self.link.client.pipeline(transaction=False) as pipe:
                    for target, sid in stale:
                        pipe.xack(stream_key(target), GROUP, sid)
                        pipe.xdel(stream_key(target), sid)
                    await pipe.execute()
        return entries
