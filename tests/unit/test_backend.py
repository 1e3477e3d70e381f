"""Backend contract: every outbox implementation passes these."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amfeishu.backend.base import DEAD, DELIVERED, DUPLICATE, NewEntry, Outbox
from amfeishu.backend.memory import MemoryOutbox
from amfeishu.backend.sqlite import SQLiteOutbox
from tests.conftest import need_binary
from tests.support.redis_server import RedisServer

Factory = Callable[[Path], Outbox]


def _redis(tmp: Path) -> Outbox:
    """A fresh database on the session's redis-server (the `redis_url` fixture)."""
    from amfeishu.backend.redis_link import Link
    from amfeishu.backend.redis_outbox import RedisOutbox

    return RedisOutbox(Link((tmp / "redis-url").read_text()))


BACKENDS: dict[str, Factory] = {
    "sqlite": lambda tmp: SQLiteOutbox(str(tmp / "outbox.db")),
    "memory": lambda tmp: MemoryOutbox(),
    "redis": _redis,  # needs redis-server: skips without it, fails under AMFEISHU_REQUIRE_E2E=1
}


def item(target: str = "ops", key: str = "k") -> NewEntry:
    return NewEntry(target, {"alerts": [{"labels": {"a": "b"}}]}, key, "trace")


async def opened(factory: Factory, tmp: Path) -> Outbox:
    box = factory(tmp)
    await box.open()
    return box


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = need_binary("redis-server", "redis-server")
    with RedisServer(binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=sorted(BACKENDS))
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        (tmp_path / "redis-url").write_text(server.url)
    return BACKENDS[request.param]


def test_put_then_pending_in_order(factory: Factory, tmp_path: Path) -> None:
    async def run() -> None:
        box = await opened(factory, tmp_path)
        entries = await box.put([item(key="a"), item("db", "b")])
        assert [e.dedup_key for e in entries] == ["a", "b"]
        assert [e.id for e in await box.pending()] == [e.id for e in entries]
        assert [e.dedup_key for e in await box.pending("db")] == ["b"]
        assert (await box.pending())[0].payload == {"alerts": [{"labels": {"a": "b"}}]}
        await box.close()

    asyncio.run(run())


def test_concurrent_puts_share_commits_and_all_land(factory: Factory, tmp_path: Path) -> None:
    async def run() -> None:
        box = await opened(factory, tmp_path)
        results = await asyncio.gather(*(box.put([item(key=str(i))]) for i in range(200)))
        ids = [r[0].id for r in results]
        assert len(set(ids)) == 200
        assert len(await box.pending()) == 200
        await box.close()

    asyncio.run(run())


def test_finish_dead_and_revive(factory: Factory, tmp_path: Path) -> None:
    async def run() -> None:
        box = await opened(factory, tmp_path)
        a, b, c = await box.put([item(key="a"), item(key="b"), item(key="c")])
        await box.attempted([a.id], "HTTP 500")
        await box.finish([a.id], DEAD, "gave up")
        await box.finish([b.id], DELIVERED)
        await box.finish([c.id], DUPLICATE)
        dead = await box.dead()
        assert [(e.id, e.attempts, e.last_error) for e in dead] == [(a.id, 1, "gave up")]
        assert await box.pending() == []
        assert {e.dedup_key for e in await box.recent(time.time() - 60)} == {"b", "c"}
        assert await box.revive([a.id]) == 1
        assert [e.id for e in await box.pending()] == [a.id]
        assert (await box.pending())[0].attempts == 0
        assert await box.revive(None) == 0
        await box.close()

    asyncio.run(run())


def test_purge_forgets_old_deliveries_only(factory: Factory, tmp_path: Path) -> None:
    async def run() -> None:
        box = await opened(factory, tmp_path)
        a, b = await box.put([item(key="a"), item(key="b")])
        await box.finish([a.id], DELIVERED)
        assert await box.purge(time.time() + 1) == 1
        assert [e.id for e in await box.pending()] == [b.id]
        await box.close()

    asyncio.run(run())


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    async def run() -> None:
        box = await opened(BACKENDS["sqlite"], tmp_path)
        await box.put([item(key="x")])
        await box.close()
        again = await opened(BACKENDS["sqlite"], tmp_path)
        assert [e.dedup_key for e in await again.pending()] == ["x"]
        await again.close()

    asyncio.run(run())


def test_sqlite_unwritable_path_is_an_outbox_error(tmp_path: Path) -> None:
    from amfeishu.backend.base import StorageError

    async def run() -> None:
        box = SQLiteOutbox(str(tmp_path / "missing-dir" / "outbox.db"))
        with pytest.raises(StorageError, match="cannot open outbox"):
            await box.open()

    asyncio.run(run())


def test_received_bytes_are_stored_as_they_came(factory: Factory, tmp_path: Path) -> None:
    raw = b'{"alerts": [{"status":"firing", "labels": {"\xe5\xae\x9e": "\\u4e3b"}}]}'

    async def run() -> None:
        box = await opened(factory, tmp_path)
        [entry] = await box.put([NewEntry("ops", raw, "k", "trace", 1)])
        assert (entry.body, entry.alerts) == (raw, 1)  # the receiver counted its alerts
        [stored] = await box.pending()
        assert stored.body == raw and stored.alerts == 0  # read back: not counted yet
        assert stored.payload == {"alerts": [{"status": "firing", "labels": {"实": "主"}}]}
        await box.close()

    asyncio.run(run())


def test_claim_takes_at_most_each_target_s_room(factory: Factory, tmp_path: Path) -> None:
    async def run() -> None:
        box = await opened(factory, tmp_path)
        await box.claim(["ops", "db"], {"ops": 0, "db": 0})  # a shared store: takes leases
        ops = await box.put([item("ops", str(i)) for i in range(5)])
        db = await box.put([item("db", str(i)) for i in range(3)])
        got: list[int] = []
        for _ in range(10):  # a shared store answers what reached the stream by then
            got += [e.id for e in await box.claim(["ops", "db"], {"ops": 2, "db": 2})]
            if len(got) >= 4:
                break
        assert sorted(got) == sorted([e.id for e in ops[:2]] + [e.id for e in db[:2]])
        await box.close()

    asyncio.run(run())
