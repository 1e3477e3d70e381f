"""What storage is to the rest: the outbox entry, its states, the Outbox protocol every
store implements in full, and the Backend that bundles outbox, dedup and rate limits.

A notification is written (and committed) before Alertmanager gets its 2xx,
and leaves the `pending` state only when Feishu said `code == 0`, when it
was a duplicate, or when it went dead (README.md, "What it guarantees").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from amfeishu.config.types import RateLimit
from amfeishu.dedup import Dedup
from amfeishu.ratelimit import Limiter

PENDING, DELIVERED, DUPLICATE, DEAD = "pending", "delivered", "duplicate", "dead"
LimiterFactory = Callable[[str, RateLimit], Limiter]  # (bot webhook, limits) → limiter


class StorageError(Exception):
    """Storage cannot store or read; the receiver answers 503."""


@dataclass(slots=True)
class Entry:
    """One outbox row. It keeps the notification as stored, JSON bytes (often the very
    bytes Alertmanager sent): a waiting entry costs little more than those, and a worker
    parses it only when a batch takes it."""

    id: int
    target: str
    body: bytes  # the notification, UTF-8 JSON
    dedup_key: str
    trace_id: str
    received_at: float  # wall clock, seconds
    state: str = PENDING
    attempts: int = 0
    last_error: str | None = None
    updated_at: float = field(default_factory=time.time)
    # How many alerts `body` holds, when this process's receiver parsed it (0: not known,
    # e.g. read back from storage, so the worker parses it once to check it and count).
    alerts: int = field(default=0, compare=False, repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        """The stored notification, decoded (listings, `amfeishu outbox`)."""
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass(frozen=True)
class NewEntry:
    target: str
    payload: dict[str, Any] | bytes  # bytes: JSON to store as it is (the received body)
    dedup_key: str
    trace_id: str
    alerts: int = 0  # how many, when the receiver counted them (Entry.alerts)

    @property
    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        return json.dumps(self.payload, ensure_ascii=False).encode()


class Outbox(Protocol):
    """What the dispatcher, the receiver and `amfeishu outbox` need of storage."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self) -> None: ...
    async def put(self, items: list[NewEntry]) -> list[Entry]: ...
    async def pending(self, target: str | None = None) -> list[Entry]: ...
    async def pending_refs(self) -> list[tuple[int, float, str]]:
        """(id, received_at, target) of every pending entry, oldest first: cheap to list."""
        ...

    async def by_ids(self, ids: Iterable[int]) -> list[Entry]: ...
    async def claim(self, targets: list[str], room: Mapping[str, int] | None = None) -> list[Entry]:
        """Entries of these targets that this process should deliver and does not hold yet,
        at most room[target] of a target when `room` is given (its worker's free window).

        Shared stores hand each entry to one replica (and take back those of a
        replica that died); a local store has one consumer, so: every pending one.
        """
        ...

    async def finish(self, ids: Iterable[int], state: str, error: str | None = None) -> None: ...
    async def attempted(self, ids: Iterable[int], error: str) -> None: ...
    async def recent(self, since: float) -> list[Entry]: ...
    async def dead(self, target: str | None = None) -> list[Entry]: ...
    async def revive(self, ids: Iterable[int] | None) -> int: ...
    async def purge(self, before: float) -> int: ...


def within_room(
    entries: Iterable[Entry], targets: list[str], room: Mapping[str, int] | None
) -> list[Entry]:
    """The entries of these targets, the first room[target] of each when room is given."""
    wanted = set(targets)
    left = dict(room) if room is not None else None
    out = []
    for entry in entries:
        if entry.target not in wanted:
            continue
        if left is not None:
            if left.get(entry.target, 0) <= 0:
                continue
            left[entry.target] -= 1
        out.append(entry)
    return out


@dataclass
class Backend:
    outbox: Outbox
    dedup: Dedup
    limiter: LimiterFactory
    shared: bool = False  # True: replicas claim their work from the outbox (Outbox.claim)
