from __future__ import annotations

import asyncio

import pytest

from amfeishu.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sends_in(
    limiter: SlidingWindowLimiter, clock: Clock, seconds: float, step: float
) -> list[float]:
    """Simulate a sender that sends whenever allowed, for `seconds` of fake time."""
    sent = []
    end = clock.now + seconds
    while clock.now < end:
        if limiter.delay() == 0:
            limiter.record()
            sent.append(clock.now)
        else:
            clock.now += step
    return sent


def max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


@pytest.mark.parametrize(("per_second", "per_minute"), [(5, 100), (2, 20), (10, 1000)])
def test_never_exceeds_either_limit_in_any_sliding_window(per_second: int, per_minute: int) -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(per_second, per_minute, clock=clock)
    sent = sends_in(limiter, clock, 180, 0.01)
    assert max_in_window(sent, 1.0) <= per_second
    assert max_in_window(sent, 60.0) <= per_minute
    # ...and it is not needlessly slow: at least 90 % of the per-minute budget is used.
    assert len(sent) >= 0.9 * min(per_minute * 3, per_second * 180)


def test_delay_says_how_long() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 100, clock=clock)
    limiter.record()
    limiter.record()
    assert 1.0 < limiter.delay() <= 1.1 + 1e-9
    clock.now += 1.2
    assert limiter.delay() == 0


def test_a_slot_counts_from_the_answer_not_the_grant() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 100, clock=clock)
    limiter.record()  # granted at t, the request is delayed...
    clock.now += 0.5
    asyncio.run(limiter.sent())  # ...and answered at t + 0.5: the window runs from there
    clock.now += 0.7
    assert limiter.delay() > 0  # 1.2 s after the grant, but only 0.7 s after the answer
    clock.now += 0.5
    assert limiter.delay() == 0
