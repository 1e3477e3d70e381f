"""The card registry on Redis: every replica finds the card another one sent, and a click
at any replica is counted once. Keys: backend/redis_link.py."""

from __future__ import annotations

import time

from amfeishu.backend.cards import CardRecord
from amfeishu.backend.redis_link import Link, card_key, event_key

CARD_TTL = 30 * 86400  # a card answers clicks for 30 days (updates only for 14)


class RedisCards:
    def __init__(self, link: Link) -> None:
        self.link = link

    async def open(self) -> None:
        with self.link.errors():
            await self.link.client.ping()

    async def close(self) -> None:
        await self.link.aclose()

    async def get(self, target: str, group: str) -> CardRecord | None:
        with self.link.errors():
            text = await self.link.client.get(card_key(target, group))
        return None if text is None else CardRecord.from_json(str(text))

    async def save(self, record: CardRecord) -> None:
        record.updated_at = time.time()
        with self.link.errors():
            await self.link.client.set(
                card_key(record.target, record.group), record.to_json(), ex=CARD_TTL
            )

    async def first_event(self, event_id: str, ttl: float) -> bool:
        with self.link.errors():
            done = await self.link.client.set(event_key(event_id), "1", nx=True, px=int(ttl * 1000))
        return bool(done)
