"""What storage is to the rest: the outbox entry, its states, the Outbox protocol every
store implements in full, and the Backend that bundles outbox, dedup and rate limits.

A notification is written (and committed) before Alertmanager gets its 2xx,
and leaves the `pending` state only when Feishu said `code == 0`, when it
was a duplicate, or when it went dead (README.md, "What it guarantees").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from amfeishu.config.types import RateLimit
from amfeishu.dedup import Dedup
from amfeishu.ratelimit import Limiter

PENDING, DELIVERED, DUPLICATE, DEAD = "pending", "delivered", "duplicate", "dead"
LimiterFactory = Callable[[str, RateLimit], Limiter]  # (bot webhook, limits) → limiter


class StorageError(Exception):
    """Storage cannot store or read; the receiver answers 503."""


@dataclass
class Entry:
    id: int
    target: str
    payload: dict[str, Any]
    dedup_key: str
    trace_id: str
    received_at: float  # wall clock, seconds
    state: str = PENDING
    attempts: int = 0
    last_error: str | None = None
    updated_at: float = field(default_factory=time.time)
    # Parsed payload handed over by the receiver in the same process (not stored).
    notification: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class NewEntry:
    target: str
    payload: dict[str, Any]
    dedup_key: str
    trace_id: str


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
    async def claim(self, targets: list[str]) -> list[Entry]:
        """Entries of these targets that this process should deliver and does not hold yet.

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


@dataclass
class Backend:
    outbox: Outbox
    dedup: Dedup
    limiter: LimiterFactory
    shared: bool = False  # True: replicas claim their work from the outbox (Outbox.claim)
