"""`storage.path: ":memory:"`: the outbox in a dict; nothing survives a restart."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace

from amfeishu.backend.base import DEAD, DELIVERED, DUPLICATE, PENDING, Entry, NewEntry, within_room


class MemoryOutbox:
    """`storage.path: ":memory:"`: same behaviour, nothing survives a restart."""

    def __init__(self) -> None:
        self._rows: dict[int, Entry] = {}
        # Ids unique across restarts too: an app card's uuid is made of its entries' ids.
        self._next = time.time_ns() // 1000

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put(self, items: list[NewEntry]) -> list[Entry]:
        now = time.time()
        out = []
        for item in items:
            entry = Entry(self._next, item.target, item.body, item.dedup_key, item.trace_id, now)
            self._rows[entry.id] = entry
            self._next += 1
            out.append(replace(entry, alerts=item.alerts))  # copies, as from the other stores
        return out

    def _select(self, state: str, target: str | None) -> list[Entry]:
        rows = self._rows.values()
        return [replace(e) for e in rows if e.state == state and target in (None, e.target)]

    async def pending(self, target: str | None = None) -> list[Entry]:
        return self._select(PENDING, target)

    async def dead(self, target: str | None = None) -> list[Entry]:
        return self._select(DEAD, target)

    async def pending_refs(self) -> list[tuple[int, float, str]]:
        return sorted((e.id, e.received_at, e.target) for e in self._select(PENDING, None))

    async def claim(self, targets: list[str], room: Mapping[str, int] | None = None) -> list[Entry]:
        """One process is the only consumer: every pending entry of the targets (oldest
        first, up to each target's room)."""
        return within_room(await self.pending(), targets, room)

    async def by_ids(self, ids: Iterable[int]) -> list[Entry]:
        return [replace(self._rows[i]) for i in ids if i in self._rows]

    async def recent(self, since: float) -> list[Entry]:
        return [
            e
            for e in self._rows.values()
            if e.state in (DELIVERED, DUPLICATE) and e.updated_at >= since
        ]

    async def finish(self, ids: Iterable[int], state: str, error: str | None = None) -> None:
        for i in ids:
            if (entry := self._rows.get(i)) is not None:
                entry.state, entry.updated_at = state, time.time()
                entry.last_error = error or entry.last_error

    async def attempted(self, ids: Iterable[int], error: str) -> None:
        for i in ids:
            if (entry := self._rows.get(i)) is not None:
                entry.attempts += 1
                entry.last_error, entry.updated_at = error, time.time()

    async def revive(self, ids: Iterable[int] | None) -> int:
        wanted = None if ids is None else set(ids)
        count = 0
        for entry in self._rows.values():
            if entry.state == DEAD and (wanted is None or entry.id in wanted):
                entry.state, entry.attempts = PENDING, 0
                entry.received_at = entry.updated_at = time.time()
                count += 1
        return count

    async def purge(self, before: float) -> int:
        old = [
            i
            for i, e in self._rows.items()
            if e.state in (DELIVERED, DUPLICATE) and e.updated_at < before
        ]
        for i in old:
            del self._rows[i]
        return len(old)

    async def check(self) -> None:
        return None
