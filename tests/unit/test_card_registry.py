"""The card registry contract, the same tests over every store: memory, SQLite (a real
file, reopened) and Redis (a real redis-server, as two replicas see it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from amfeishu.backend.base import StorageError
from amfeishu.backend.cards import RESOLVED, CardRecord, CardRegistry, MemoryCards, SQLiteCards
from amfeishu.backend.redis_cards import CARD_TTL, RedisCards
from amfeishu.backend.redis_link import Link, card_key
from tests.conftest import need_binary
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer

T = TypeVar("T")
Opener = Callable[[], CardRegistry]  # a registry on the same store each call (a restart)


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = need_binary("redis-server", "redis-server")
    with RedisServer(binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "redis"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "memory":
        store = MemoryCards()  # one process: "reopening" is the same object
        return lambda: store
    if request.param == "sqlite":
        path = str(tmp_path / "outbox.db")
        return lambda: SQLiteCards(path)
    server: RedisServer = request.getfixturevalue("shared_redis")
    server.flush()
    return lambda: RedisCards(Link(server.url))


def run(opener: Opener, body: Callable[[CardRegistry], Awaitable[T]]) -> T:
    async def go() -> T:
        registry = opener()
        await registry.open()
        try:
            return await body(registry)
        finally:
            await registry.close()

    return asyncio.run(go())


def record(**fields: object) -> CardRecord:
    base = CardRecord("oncall", "0123456789abcdef", message_id="om_first")
    for name, value in fields.items():
        setattr(base, name, value)
    return base


def test_get_of_an_unknown_group_is_none(opener: Opener) -> None:
    assert run(opener, lambda r: r.get("oncall", "nope")) is None


def test_save_then_get_round_trips_every_field(opener: Opener) -> None:
    saved = record(
        payload={"groupKey": '{}:{alertname="磁盘满"}', "alerts": [{"labels": {"a": "b"}}]},
        state=RESOLVED,
        severity="critical",
        acked_by="ou_alice",
        acked_at=1_700_000_000.5,
        silence_ids=["5a4c-1", "5a4c-2"],
        silenced_by="ou_bob",
        silenced_until=1_700_003_600.0,
        sent_at=1_699_999_999.0,
    )

    async def body(r: CardRegistry) -> CardRecord | None:
        await r.save(saved)
        return await r.get("oncall", "0123456789abcdef")

    got = run(opener, body)
    assert got == saved
    assert got is not saved  # a copy: changing it does not change the store


def test_save_replaces_and_keys_are_target_and_group(opener: Opener) -> None:
    async def body(r: CardRegistry) -> list[str | None]:
        await r.save(record())
        await r.save(record(message_id="om_second"))
        await r.save(CardRecord("other", "0123456789abcdef", message_id="om_other"))
        await r.save(CardRecord("oncall", "fedcba9876543210", message_id="om_group2"))
        found = [
            await r.get("oncall", "0123456789abcdef"),
            await r.get("other", "0123456789abcdef"),
            await r.get("oncall", "fedcba9876543210"),
        ]
        return [c.message_id if c else None for c in found]

    assert run(opener, body) == ["om_second", "om_other", "om_group2"]


def test_save_stamps_updated_at(opener: Opener) -> None:
    before = time.time()

    async def body(r: CardRegistry) -> float:
        await r.save(record(updated_at=0.0))
        got = await r.get("oncall", "0123456789abcdef")
        assert got is not None
        return got.updated_at

    assert before <= run(opener, body) <= time.time()


def test_first_event_is_true_once_then_false(opener: Opener) -> None:
    async def body(r: CardRegistry) -> list[bool]:
        return [
            await r.first_event("ev-1", 3600),
            await r.first_event("ev-1", 3600),
            await r.first_event("ev-2", 3600),
            await r.first_event("ev-1", 3600),
        ]

    assert run(opener, body) == [True, False, True, False]


def test_first_event_is_forgotten_after_its_ttl(opener: Opener) -> None:
    async def body(r: CardRegistry) -> tuple[bool, bool, float]:
        first = await r.first_event("ev-short", 0.3)
        again = await r.first_event("ev-short", 0.3)
        started = time.monotonic()
        for _ in range(100):  # bounded: about 5 s at most
            if await r.first_event("ev-short", 0.3):
                return first, again, time.monotonic() - started
            await asyncio.sleep(0.05)  # polling interval of a condition with a deadline
        raise AssertionError("the event id was never forgotten")

    first, again, waited = run(opener, body)
    assert (first, again) == (True, False)
    assert waited < 5.0


def test_records_and_events_survive_a_restart(opener: Opener) -> None:
    async def write(r: CardRegistry) -> bool:
        await r.save(record(acked_by="ou_alice"))
        return await r.first_event("ev-kept", 3600)

    async def read(r: CardRegistry) -> tuple[CardRecord | None, bool]:
        return await r.get("oncall", "0123456789abcdef"), await r.first_event("ev-kept", 3600)

    assert run(opener, write) is True
    got, first = run(opener, read)  # a new registry on the same store
    assert got is not None and got.acked_by == "ou_alice"
    assert first is False


def test_from_json_ignores_fields_it_does_not_know() -> None:
    known = record()
    text = known.to_json().replace('"target"', '"added_later":1,"target"')
    assert CardRecord.from_json(text) == known


def test_take_people_copies_only_what_people_did() -> None:
    card = record(message_id="om_new", payload={"v": 2}, state=RESOLVED)
    clicked = record(
        message_id="om_old",
        acked_by="ou_alice",
        acked_at=5.0,
        silence_ids=["s1"],
        silenced_by="ou_bob",
        silenced_until=9.0,
    )
    card.take_people(clicked)
    assert (card.acked_by, card.acked_at, card.silence_ids) == ("ou_alice", 5.0, ["s1"])
    assert (card.silenced_by, card.silenced_until) == ("ou_bob", 9.0)
    assert (card.message_id, card.payload, card.state) == ("om_new", {"v": 2}, RESOLVED)
    clicked.silence_ids.append("s2")
    assert card.silence_ids == ["s1"]  # not shared


def test_redis_cards_expire_after_thirty_days(shared_redis: RedisServer) -> None:
    shared_redis.flush()
    run(lambda: RedisCards(Link(shared_redis.url)), lambda r: r.save(record()))
    with shared_redis.client() as client:
        ttl = client.ttl(card_key("oncall", "0123456789abcdef"))
    assert CARD_TTL - 60 < ttl <= CARD_TTL == 30 * 86400


def test_two_redis_replicas_share_cards_and_events(shared_redis: RedisServer) -> None:
    shared_redis.flush()

    async def body() -> tuple[str, list[bool]]:
        one, two = RedisCards(Link(shared_redis.url)), RedisCards(Link(shared_redis.url))
        await one.open()
        await two.open()
        try:
            await one.save(record(message_id="om_by_one"))
            seen = await two.get("oncall", "0123456789abcdef")
            claims = [await one.first_event("ev-x", 60), await two.first_event("ev-x", 60)]
        finally:
            await one.close()
            await two.close()
        return (seen.message_id if seen else ""), claims

    assert asyncio.run(body()) == ("om_by_one", [True, False])


def test_a_closed_sqlite_registry_raises_storage_error(tmp_path: Path) -> None:
    async def body() -> None:
        cards = SQLiteCards(str(tmp_path / "outbox.db"))
        await cards.open()
        await cards.close()
        with pytest.raises(StorageError, match="closed"):
            await cards.get("oncall", "g")

    asyncio.run(body())


def test_an_unreachable_redis_raises_storage_error_without_the_password() -> None:
    async def body() -> str:
        cards = RedisCards(Link(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"))
        try:
            with pytest.raises(StorageError) as caught:
                await cards.save(record())
            return str(caught.value)
        finally:
            await cards.close()

    message = asyncio.run(body())
    assert "hunter2-secret" not in message
