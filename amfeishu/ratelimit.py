"""Per-webhook send limits as sliding windows.

Feishu allows 5 requests/s and 100/min per bot and does not say whether its
windows are fixed or sliding. A token bucket refilled continuously lets
through up to twice its size within one window (a full bucket plus a
window's refill), which a sliding window would refuse; a log of recent send
times never exceeds the limit in any window, fixed or sliding. A small
margin absorbs network jitter between our clock and Feishu's.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

WINDOW_MARGIN = 1.1  # seconds of slack multiplier on each window


class Limiter(Protocol):
    """Local to the process, or shared by replicas through Redis (Feishu limits per bot)."""

    async def wait(self) -> None: ...
    async def acquire(self, on_wait: Callable[[float], None] | None = None) -> float: ...
    async def sent(self) -> None: ...  # the request of the oldest taken slot was answered


class SlidingWindowLimiter:
    def __init__(
        self,
        per_second: float,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = [(1.0 * WINDOW_MARGIN, int(per_second)), (60.0 + 1.0, int(per_minute))]
        self._sent: deque[list[float]] = deque()  # [time] per send, mutable: see sent()
        self._open: deque[list[float]] = deque()  # slots whose request awaits its answer
        self._clock = clock
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Seconds until one more send stays within every window (0 = now)."""
        now = self._clock()
        horizon = max(w for w, _ in self._limits)
        while self._sent and self._sent[0][0] <= now - horizon and self._sent[0] not in self._open:
            self._sent.popleft()
        wait = 0.0
        for window, limit in self._limits:
            if limit <= 0 or len(self._sent) < limit:
                continue
            recent = sorted(t for (t,) in self._sent if t > now - window)
            if len(recent) >= limit:
                wait = max(wait, recent[-limit] + window - now)
        return wait

    def record(self) -> None:
        slot = [self._clock()]
        self._sent.append(slot)
        self._open.append(slot)

    async def sent(self) -> None:
        """The oldest open request was answered: count it from now.

        Its arrival at Feishu lies between the slot and the answer; counting
        from the answer keeps every window safe however long the event loop
        or the network delayed the request after its slot was granted.
        """
        if self._open:
            self._open.popleft()[0] = self._clock()

    async def wait(self) -> None:
        """Wait until a send would be allowed, without taking the slot.

        The worker waits here before it assembles a batch (so arrivals keep
        merging), and takes the slot with `acquire` right before the POST:
        the time recorded is the time the request leaves.
        """
        while (pause := self.delay()) > 0:
            await asyncio.sleep(pause)

    async def acquire(self, on_wait: Callable[[float], None] | None = None) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while (pause := self.delay()) > 0:
                if on_wait is not None:
                    on_wait(pause)
                await asyncio.sleep(pause)
                waited += pause
            self.record()
        return waited


class Unlimited:
    """Where nothing limits the sends (a preview target logs its cards)."""

    async def wait(self) -> None:
        return None

    async def acquire(self, on_wait: Callable[[float], None] | None = None) -> float:
        return 0.0

    async def sent(self) -> None:
        return None


class AllOf:
    """Every one of several limits at once (a Feishu app: per chat and per app)."""

    def __init__(self, *limiters: Limiter) -> None:
        self.limiters = limiters

    async def wait(self) -> None:
        for limiter in self.limiters:
            await limiter.wait()

    async def acquire(self, on_wait: Callable[[float], None] | None = None) -> float:
        return sum([await limiter.acquire(on_wait) for limiter in self.limiters])

    async def sent(self) -> None:
        for limiter in self.limiters:
            await limiter.sent()
