"""The card registry of app targets: which Feishu message shows an alert group, and what
people did on it (acknowledged, silenced), so any replica updates the same card and a
restart forgets nothing. Callback event ids are remembered here too (a click counts once).

README.md, "Feishu app mode", tells how cards are kept; backend/redis_cards.py is the
Redis store, this module the embedded ones (SQLite beside the outbox, and memory).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from amfeishu.backend.sqlite_thread import SQLiteThread

FIRING, RESOLVED = "firing", "resolved"
# What people did on a card; a click and a delivery each write only their own part.
PEOPLE_FIELDS = ("acked_by", "acked_at", "silence_ids", "silenced_by", "silenced_until")


@dataclass
class CardRecord:
    """One alert group's card in one target."""

    target: str
    group: str  # a short id of the groupKey (it travels in button values)
    message_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)  # the group's last notification
    state: str = FIRING  # firing | resolved, as last shown
    severity: str = ""  # the highest firing severity last shown
    acked_by: str = ""
    acked_at: float = 0.0
    silence_ids: list[str] = field(default_factory=list)
    silenced_by: str = ""
    silenced_until: float = 0.0
    sent_at: float = 0.0
    updated_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, separators=(",", ":"))

    def take_people(self, other: CardRecord) -> None:
        """What people did, as `other` (a fresher read) has it: a delivery that read the
        record before a click must not undo the click, nor a click the delivery."""
        for name in PEOPLE_FIELDS:
            value = getattr(other, name)
            setattr(self, name, list(value) if isinstance(value, list) else value)

    @classmethod
    def from_json(cls, text: str) -> CardRecord:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class CardRegistry(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, target: str, group: str) -> CardRecord | None: ...
    async def save(self, record: CardRecord) -> None: ...
    async def first_event(self, event_id: str, ttl: float) -> bool:
        """True the first time an event id is seen within ttl seconds (then never again)."""
        ...


class MemoryCards:
    """`storage.path: ":memory:"`: nothing survives a restart."""

    def __init__(self) -> None:
        self._cards: dict[tuple[str, str], str] = {}
        self._events: dict[str, float] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, target: str, group: str) -> CardRecord | None:
        text = self._cards.get((target, group))
        return None if text is None else CardRecord.from_json(text)

    async def save(self, record: CardRecord) -> None:
        record.updated_at = time.time()
        self._cards[(record.target, record.group)] = record.to_json()

    async def first_event(self, event_id: str, ttl: float) -> bool:
        now = time.time()
        self._events = {k: at for k, at in self._events.items() if at > now - ttl}
        if event_id in self._events:
            return False
        self._events[event_id] = now
        return True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    target TEXT NOT NULL,
    grp TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (target, grp)
);
CREATE TABLE IF NOT EXISTS callback_events (
    event_id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
"""


class SQLiteCards:
    """In the outbox's SQLite file (its own connection and thread; WAL lets both write)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SQLiteThread(path, "the card registry", "cards")
        self._run = self._db.run

    async def open(self) -> None:
        def setup(db: sqlite3.Connection) -> None:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

        await self._db.open(setup)

    async def close(self) -> None:
        await self._db.close()

    async def get(self, target: str, group: str) -> CardRecord | None:
        def read(db: sqlite3.Connection) -> str | None:
            sql = "SELECT record FROM cards WHERE target = ? AND grp = ?"
            row = db.execute(sql, (target, group)).fetchone()
            return None if row is None else str(row[0])

        text = await self._run(read)
        return None if text is None else CardRecord.from_json(text)

    async def save(self, record: CardRecord) -> None:
        record.updated_at = time.time()
        row = (record.target, record.group, record.to_json(), record.updated_at)

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO cards VALUES (?, ?, ?, ?)", row)
            db.commit()

        await self._run(write)

    async def first_event(self, event_id: str, ttl: float) -> bool:
        now = time.time()

        def claim(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM callback_events WHERE seen_at < ?", (now - ttl,))
            cursor = db.execute(
                "INSERT OR IGNORE INTO callback_events VALUES (?, ?)", (event_id, now)
            )
            db.commit()
            return cursor.rowcount == 1

        return await self._run(claim)
