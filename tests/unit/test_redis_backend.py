"""What replicas share through a real redis-server: dedup, the per-bot limit, leases and
claims of the shared outbox (the outbox contract itself is in test_outbox.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from amfeishu.backend import redis_outbox
from amfeishu.backend.base import DEAD, DELIVERED, Entry, NewEntry, StorageError
from amfeishu.backend.redis_limits import RedisDedup, RedisLimiter
from amfeishu.backend.redis_link import PREFIX, Link
from amfeishu.backend.redis_outbox import RedisOutbox
from tests.conftest import need_binary
from tests.support.redis_server import RedisServer

T = TypeVar("T")


@pytest.fixture(scope="module")
def redis_binary() -> str:
    return need_binary("redis-server", "redis-server")


@pytest.fixture(scope="module")
def shared_redis(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    with RedisServer(redis_binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def server(shared_redis: RedisServer) -> RedisServer:
    shared_redis.flush()
    return shared_redis


def item(target: str = "ops", key: str = "k") -> NewEntry:
    return NewEntry(target, {"alerts": [{"labels": {"a": "b"}}]}, key, "trace")


async def until(step: Callable[[], Awaitable[T]], done: Callable[[T], bool], tries: int = 30) -> T:
    """Call `step` (each call blocks at most about a second) until `done` holds."""
    for _ in range(tries):
        result = await step()
        if done(result):
            return result
    raise AssertionError(f"not done after {tries} tries: last {result!r}")


# ---- dedup ------------------------------------------------------------------------------------


def test_dedup_first_replica_wins_then_the_key_expires(server: RedisServer) -> None:
    async def run() -> None:
        a, b = Link(server.url), Link(server.url)
        one, two = RedisDedup(a, ttl=0.3), RedisDedup(b, ttl=0.3)
        assert await one.first_time("k") is True
        assert await two.first_time("k") is False  # the other replica sees it too
        assert await one.first_time("k") is False
        started = time.monotonic()
        while not await two.first_time("k"):  # SET NX PX: gone after the ttl
            assert time.monotonic() - started < 5, "the dedup key never expired"
            await asyncio.sleep(0.05)
        assert time.monotonic() - started >= 0.2
        await two.forget("k")
        assert await one.first_time("k") is True
        await two.remember("r")
        assert await one.first_time("r") is False
        assert await one.first_time("e", 7) is True  # entry 7 marks it, then its replica dies
        assert await two.first_time("e", 7) is True  # entry 7 taken over: not its own duplicate
        assert await two.first_time("e", 8) is False  # entry 8, the HA peer's copy: dropped
        assert await two.first_time("e") is False
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_dedup_ttl_zero_is_off_and_keys_are_namespaced(server: RedisServer) -> None:
    async def run() -> None:
        link = Link(server.url)
        off = RedisDedup(link, ttl=0)
        assert await off.first_time("k") and await off.first_time("k")
        assert await RedisDedup(link, ttl=60).first_time("k")
        with server.client() as client:
            assert client.keys("*") == [PREFIX + "dedup:k"]
            assert 59_000 < client.pttl(PREFIX + "dedup:k") <= 60_000
        await link.aclose()

    asyncio.run(run())


# ---- the shared rate limit ----------------------------------------------------------------------


def most_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_two_replicas_together_stay_inside_both_windows(server: RedisServer) -> None:
    """3/s and 10/min, two limiters on two connections (two replicas), two senders each."""
    bot = "https://open.feishu.cn/open-apis/bot/v2/hook/secret-token"

    async def run() -> list[float]:
        links = [Link(server.url), Link(server.url)]
        limiters = [RedisLimiter(link, bot, 3, 10) for link in links]
        stop_at = time.monotonic() + 5.0  # 10 fit in 3.3 s; the 11th would wait ~60 s
        taken: list[float] = []

        async def sender(limiter: RedisLimiter) -> None:
            while (left := stop_at - time.monotonic()) > 0:  # acquire(), with a deadline
                pause = await limiter.delay(take=True)
                if pause == 0:
                    taken.append(time.monotonic())
                else:
                    await asyncio.sleep(min(pause, left))

        await asyncio.gather(*(sender(limiters[i % 2]) for i in range(4)))
        assert await limiters[0].delay() > 50  # the minute's budget is spent: ~60 s to wait
        for link in links:
            await link.aclose()
        return taken

    taken = asyncio.run(run())
    with server.client() as client:
        [key] = client.keys(PREFIX + "rate:*")
        assert "secret-token" not in key  # the log is keyed by a hash, never the URL
        log = [score / 1e6 for _, score in client.zrange(key, 0, -1, withscores=True)]
    assert len(taken) == len(log) == 10
    assert most_in_window(log, 1.0) <= 3  # on Redis's clock, as recorded
    assert most_in_window(taken, 1.0) <= 3  # and as the senders saw it
    assert log[-1] - log[0] < 4.0  # not needlessly slow: 10 sends within ~3.3 s


def test_an_answered_slot_counts_from_the_answer(server: RedisServer) -> None:
    async def run() -> None:
        link = Link(server.url)
        limiter = RedisLimiter(link, "answered-bot", 1, 10)
        assert await limiter.acquire() == 0
        [(member, granted)] = await link.client.zrange(limiter.key, 0, -1, withscores=True)
        await limiter.sent()
        [(same, answered)] = await link.client.zrange(limiter.key, 0, -1, withscores=True)
        assert same == member and answered > granted
        await limiter.sent()  # nothing open: no-op
        await link.aclose()

    asyncio.run(run())


def test_wait_does_not_take_the_slot(server: RedisServer) -> None:
    async def run() -> None:
        link = Link(server.url)
        limiter = RedisLimiter(link, "bot", 1, 10)
        await limiter.wait()
        await limiter.wait()  # nothing taken: no pause
        assert await limiter.acquire() == 0
        waits: list[float] = []
        started = time.monotonic()
        waited = await limiter.acquire(waits.append)
        assert waited > 0.9 and waits and time.monotonic() - started >= 1.0
        await link.aclose()

    asyncio.run(run())


# ---- leases and claims ------------------------------------------------------------------------


def test_only_the_lease_holder_claims_and_finish_acknowledges(server: RedisServer) -> None:
    async def run() -> None:
        a, b = RedisOutbox(Link(server.url)), RedisOutbox(Link(server.url))
        await a.open()
        await b.open()
        assert await a.claim(["ops"]) == []  # takes the lease; nothing there yet
        first, second = await b.put([item(key="1"), item(key="2")])  # any replica accepts
        got = await until(lambda: a.claim(["ops"]), bool)
        assert [e.id for e in got] == [first.id, second.id]
        assert got[0].payload == first.payload and got[0].dedup_key == "1"
        assert await b.claim(["ops"]) == []  # not the holder: skips the target
        with server.client() as client:
            holder = client.get(PREFIX + "lease:ops")
            assert holder == a.consumer
            assert client.xpending(PREFIX + "outbox:ops", "amfeishu")["pending"] == 2
        await a.finish([first.id], DELIVERED)
        await a.finish([second.id], DEAD, "19001")
        with server.client() as client:
            assert client.xpending(PREFIX + "outbox:ops", "amfeishu")["pending"] == 0
            assert client.xlen(PREFIX + "outbox:ops") == 0  # acknowledged entries go
        assert [e.id for e in await b.dead()] == [second.id]
        assert await b.revive(None) == 1  # `amfeishu outbox replay --all`
        [again] = await until(lambda: a.claim(["ops"]), bool)
        assert (again.id, again.attempts) == (second.id, 0)
        await a.close()
        await b.close()

    asyncio.run(run())


def test_a_dead_holder_s_claims_move_to_another_replica(server: RedisServer) -> None:
    async def run() -> None:
        a = RedisOutbox(Link(server.url), lease_ms=600)
        b = RedisOutbox(Link(server.url), lease_ms=600)
        await a.claim(["ops"])
        entries = await b.put([item(key=str(i)) for i in range(3)])
        claimed = await until(lambda: a.claim(["ops"]), bool)
        assert len(claimed) == 3
        await a.link.aclose()  # kill -9: no release, nothing acknowledged
        started = time.monotonic()
        taken = await until(lambda: b.claim(["ops"]), bool)
        assert sorted(e.id for e in taken) == [e.id for e in entries]
        assert 0.3 < time.monotonic() - started < 3  # once the lease expired
        with server.client() as client:
            consumers = client.xinfo_consumers(PREFIX + "outbox:ops", "amfeishu")
            assert {c["name"]: c["pending"] for c in consumers}[b.consumer] == 3
        await b.close()

    asyncio.run(run())


def test_close_hands_the_lease_over_at_once(server: RedisServer) -> None:
    async def run() -> None:
        a, b = RedisOutbox(Link(server.url)), RedisOutbox(Link(server.url))
        await a.claim(["ops"])
        await b.put([item()])
        assert len(await until(lambda: a.claim(["ops"]), bool)) == 1
        await a.close()  # SIGTERM: the in-flight entry stays pending, the lease is released
        started = time.monotonic()
        [entry] = await until(lambda: b.claim(["ops"]), bool, tries=5)
        assert entry.dedup_key == "k" and time.monotonic() - started < 3
        await b.close()

    asyncio.run(run())


def test_leases_spread_over_replicas_but_busy_targets_stay(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_outbox, "RENEW_EVERY", 0.1)  # each claim() renews

    async def run() -> None:
        a, b = RedisOutbox(Link(server.url)), RedisOutbox(Link(server.url))
        targets = ["ops", "db"]
        await a.claim(targets)
        assert a.leases.held == {"ops", "db"}  # alone: everything
        await a.put([item("ops"), item("db")])
        await until(lambda: a.claim(targets), lambda got: len(got) == 2)  # both busy now
        await b.claim(targets)  # a second replica appears
        for box in (a, b, a, b):
            await box.claim(targets)
        assert a.leases.held == {"ops", "db"} and b.leases.held == set()  # a is mid-delivery
        [ops] = await a.pending("ops")
        await a.finish([ops.id], DELIVERED)  # ops is idle now: it may move
        for box in (a, b, a, b):
            await box.claim(targets)
        assert a.leases.held == {"db"} and b.leases.held == {"ops"}
        await a.close()
        await b.close()

    asyncio.run(run())


def test_long_unacknowledged_entries_are_reclaimed(server: RedisServer) -> None:
    """A claim lost between XREADGROUP and the dispatcher (a replica that lost its lease
    in a pause) is picked up after `reclaim_after`."""

    async def run() -> None:
        box = RedisOutbox(Link(server.url), reclaim_after=0.4)
        await box.claim(["ops"])
        [put] = await box.put([item()])
        with server.client() as client:  # another consumer read it, then vanished
            client.xreadgroup("amfeishu", "gone-1", {PREFIX + "outbox:ops": ">"})
        box._reclaim_at = time.monotonic() + 0.5
        started = time.monotonic()
        [entry] = await until(lambda: box.claim(["ops"]), bool, tries=10)
        assert entry.id == put.id and time.monotonic() - started >= 0.4
        box.forget_consumers_after = 0
        await box.purge(time.time())
        with server.client() as client:
            names = [c["name"] for c in client.xinfo_consumers(PREFIX + "outbox:ops", "amfeishu")]
        assert names == [box.consumer]  # "gone-1" had nothing pending left: forgotten
        await box.close()

    asyncio.run(run())


def test_finished_entries_are_not_claimed_again(server: RedisServer) -> None:
    async def run() -> None:
        box = RedisOutbox(Link(server.url))
        await box.claim(["ops"])
        [put] = await box.put([item()])
        await box.finish([put.id], DELIVERED)  # finished before any replica read it
        await box.put([item(key="later")])
        got: list[Entry] = await until(lambda: box.claim(["ops"]), bool)
        assert [e.dedup_key for e in got] == ["later"]
        await box.close()

    asyncio.run(run())


# ---- failures -----------------------------------------------------------------------------------


def test_redis_away_is_an_outbox_error_without_the_password(
    redis_binary: str, tmp_path: Path
) -> None:
    own = RedisServer(redis_binary, tmp_path / "r", password="s3cr3t-pw", appendonly=True)

    async def run() -> None:
        box = RedisOutbox(Link(own.url))
        await box.open()
        [kept] = await box.put([item()])
        own.stop()
        for call in (box.put([item()]), box.check(), box.claim(["ops"]), box.pending()):
            with pytest.raises(StorageError) as caught:
                await call
            assert "s3cr3t-pw" not in str(caught.value) and "127.0.0.1" in str(caught.value)
        own.start()  # same port, same append-only file
        await box.check()  # reconnects by itself
        assert [e.id for e in await box.pending()] == [kept.id]
        await box.close()
        wrong = RedisOutbox(Link(own.url.replace("s3cr3t-pw", "wrong-pw")))
        with pytest.raises(StorageError) as caught:
            await wrong.open()
        assert "wrong-pw" not in str(caught.value)
        await wrong.close()

    with own:
        asyncio.run(run())


def test_unix_socket_and_tls_urls(redis_binary: str, tmp_path: Path) -> None:
    from tests.support.certs import issue, make_ca

    ca = make_ca(tmp_path / "pki")
    cert = issue(ca, tmp_path / "pki", "redis", server=True)
    sock = tmp_path / "redis.sock"
    unix = RedisServer(redis_binary, tmp_path / "unix", extra=["--unixsocket", str(sock)])
    tls = RedisServer(redis_binary, tmp_path / "tls", tls=(cert.cert, cert.key, ca.cert))

    async def roundtrip(url: str) -> None:
        box = RedisOutbox(Link(url))
        await box.open()
        [entry] = await box.put([item()])
        assert [e.id for e in await box.pending()] == [entry.id]
        await box.close()

    with unix, tls:
        assert tls.url.startswith("rediss://")
        asyncio.run(roundtrip(f"unix://{sock}?db=0"))
        asyncio.run(roundtrip(tls.url))


def test_sentinel_url_finds_the_master(redis_binary: str, tmp_path: Path) -> None:
    with RedisServer(redis_binary, tmp_path / "master") as master:
        conf = tmp_path / "sentinel.conf"
        conf.write_text(f"sentinel monitor amfeishu-master 127.0.0.1 {master.port} 1\n")
        sentinel = RedisServer(redis_binary, tmp_path / "sentinel", extra=["--sentinel"])
        sentinel.command = lambda: [  # type: ignore[method-assign]
            redis_binary,
            str(conf),
            "--sentinel",
            "--port",
            str(sentinel.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(sentinel.directory),
            "--logfile",
            str(sentinel.log_path),
        ]

        async def roundtrip() -> None:
            box = RedisOutbox(Link(f"redis+sentinel://127.0.0.1:{sentinel.port}/amfeishu-master"))
            await box.open()
            [entry] = await box.put([item()])
            assert [e.id for e in await box.pending()] == [entry.id]
            await box.close()

        with sentinel:
            asyncio.run(roundtrip())
        with master.client() as client:
            assert client.exists(PREFIX + "pending")
