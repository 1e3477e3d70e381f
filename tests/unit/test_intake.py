"""The dispatcher's intake (amfeishu/dispatcher.py): each pending entry reaches its worker
once, whoever hands it over (the receiver, a read-back from storage, a shared outbox
handing it out again), and a waiting entry is held in its lean form (bytes, a count)."""

from __future__ import annotations

import asyncio
import json
import logging
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from amfeishu.backend.base import DELIVERED, NewEntry
from amfeishu.config.load import build_config
from amfeishu.dispatcher import Dispatcher
from amfeishu.service import Service
from benchmarks.payloads import notification
from tests.conftest import ROOT

FIRING = (ROOT / "examples/firing.json").read_bytes()


def run_with_service(
    check: Callable[[Service, Dispatcher], Awaitable[None]], targets: tuple[str, ...] = ("ops",)
) -> None:
    """A started service on a memory outbox whose workers only hold (grouping wait 1h)."""
    config = build_config(
        {
            "storage": {"path": ":memory:"},
            "grouping": {"wait": "1h"},
            "targets": {name: {} for name in targets},
        },
        env={},
    )

    async def body() -> None:
        service = Service.from_config(config)
        await service.start()
        try:
            assert service.dispatcher is not None
            await check(service, service.dispatcher)
        finally:
            await service.stop()

    asyncio.run(body())


def test_an_entry_handed_over_twice_is_queued_once_with_its_progress() -> None:
    async def check(service: Service, dispatcher: Dispatcher) -> None:
        [entry] = await service.backend.outbox.put([NewEntry("ops", FIRING, "k", "t", 1)])
        dispatcher.submit([entry])
        worker = dispatcher.worker("ops")
        queued = worker.queue[entry.id]
        queued.delivered.add(0)
        [again] = await service.backend.outbox.by_ids([entry.id])  # a read-back
        dispatcher.submit([again], from_storage=True)
        assert worker.queue[entry.id] is queued and queued.delivered == {0}

    run_with_service(check)


def test_an_entry_finished_since_it_was_listed_is_not_queued() -> None:
    async def check(service: Service, dispatcher: Dispatcher) -> None:
        [entry] = await service.backend.outbox.put([NewEntry("ops", FIRING, "k", "t", 1)])
        dispatcher.submit([replace(entry, state=DELIVERED)], from_storage=True)
        assert entry.id not in dispatcher.worker("ops").queue

    run_with_service(check)


def test_stored_entries_are_checked_once_and_unreadable_ones_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def check(service: Service, dispatcher: Dispatcher) -> None:
        good, bad = await service.backend.outbox.put(
            [NewEntry("ops", FIRING, "a", "t"), NewEntry("ops", b'{"alerts": 3}', "b", "t")]
        )
        with caplog.at_level(logging.ERROR, logger="amfeishu.delivery"):
            for _ in range(3):
                entries = await service.backend.outbox.by_ids([good.id, bad.id])
                dispatcher.submit(entries, from_storage=True)
        queue = dispatcher.worker("ops").queue
        assert list(queue) == [good.id] and queue[good.id].alerts == 1
        assert [r.getMessage() for r in caplog.records].count(
            f"unreadable outbox entry {bad.id}: alerts: must be a list, got a number"
        ) == 1

    run_with_service(check)


def test_an_entry_of_an_unknown_target_is_warned_once_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def check(service: Service, dispatcher: Dispatcher) -> None:
        [entry] = await service.backend.outbox.put([NewEntry("gone", FIRING, "k", "t")])
        with caplog.at_level(logging.WARNING, logger="amfeishu.delivery"):
            for _ in range(3):
                dispatcher.submit([entry], from_storage=True)
        warned = [r for r in caplog.records if "unknown target" in r.getMessage()]
        assert len(warned) == 1
        assert [e.id for e in await service.backend.outbox.pending()] == [entry.id]

    run_with_service(check)


def test_a_waiting_notification_costs_about_its_bytes() -> None:
    """The lean form: ~3.3 kB of JSON per 5-alert notification, and little else."""
    bodies = [json.dumps(notification(f"lean-{i}", 5)).encode() for i in range(500)]
    size = sum(map(len, bodies)) / len(bodies)

    async def check(service: Service, dispatcher: Dispatcher) -> None:
        items = [
            NewEntry("ops", b, f"k{i}", "00-" + "a" * 32 + "-" + "b" * 16 + "-01", 5)
            for i, b in enumerate(bodies)
        ]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            dispatcher.submit(await service.backend.outbox.put(items))
            del items
            per = (tracemalloc.get_traced_memory()[0] - before) / len(bodies)
        finally:
            tracemalloc.stop()
        assert len(dispatcher.worker("ops").queue) == len(bodies)
        # bytes shared with the memory outbox's rows; the rest: entry, queue slot, counters
        assert per < size + 1500, f"{per:.0f} bytes per notification of {size:.0f} bytes"

    run_with_service(check)
