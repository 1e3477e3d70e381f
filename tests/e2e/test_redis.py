"""Two `amfeishu serve` replicas sharing one real redis-server (issue #7): one card per
notification whichever replica got it, one rate limit per bot, nothing lost when a
replica or Redis dies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_binary
from tests.e2e.conftest import payload
from tests.e2e.test_reliability import conveyed, storm
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import ROOT, Amfeishu, wait_until
from tests.support.redis_server import RedisServer

STREAM = "amfeishu:outbox:"


@pytest.fixture
def redis_binary() -> str:
    return need_binary("redis-server", "redis-server")


@pytest.fixture
def redis_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(redis_binary, tmp_path / "redis", appendonly=True) as server:
        yield server


def config_for(
    write_config: Callable[..., Path], server: RedisServer, targets: dict[str, str], **extra: Any
) -> Path:
    return write_config(
        {
            "storage": {"redis_url": server.url},
            "targets": {
                name: {"webhook": hook, "language": "en"} for name, hook in targets.items()
            },
            **extra,
        }
    )


def holder(server: RedisServer, target: str, replicas: list[Amfeishu]) -> Amfeishu | None:
    """The replica whose consumer name (host-pid-random) holds the target's lease."""
    with server.client() as client:
        name = client.get(f"amfeishu:lease:{target}") or ""
    return next((r for r in replicas if r.proc and f"-{r.proc.pid}-" in name), None)


def drained(server: RedisServer) -> bool:
    with server.client() as client:
        return client.zcard("amfeishu:pending") == 0


def cards_sent(*replicas: Amfeishu) -> float:
    return sum(r.metric("amfeishu_cards_sent_total") for r in replicas)


def test_the_same_notification_at_both_replicas_gives_one_card(
    feishu: FakeFeishu,
    redis_server: RedisServer,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    config = config_for(write_config, redis_server, {"ops": feishu.add_bot("ops")})
    a, b = serve(config), serve(config)
    firing = payload("firing.json")
    assert a.post("/alerts/ops", firing).status_code == 200  # an HA Alertmanager pair:
    assert b.post("/alerts/ops", firing).status_code == 200  # each peer sends it once
    wait_until(
        lambda: (
            sum(r.metric("amfeishu_notifications_total", outcome="deduplicated") for r in (a, b))
            == 1
        ),
        20,
        "the duplicate dropped",
    )
    assert b.post("/alerts/ops", payload("resolved.json")).status_code == 200
    feishu.wait_count("ops", 2)
    colours = [m["card"]["header"]["template"] for m in feishu.messages("ops")]
    assert colours == ["red", "green"]


def test_a_storm_split_over_both_replicas_stays_inside_the_bot_limits(
    feishu: FakeFeishu,
    redis_server: RedisServer,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    """Two targets post to one bot (Feishu limits per bot); the leases put one target on
    each replica, so both replicas send to the bot at once and only the shared limiter
    keeps them inside 5/s and 100/min."""
    hook = feishu.add_bot("ops")  # the fake refuses beyond 5/s and 100/min
    config = config_for(
        write_config,
        redis_server,
        {"ops": hook, "ops2": hook},
        grouping={"max_alerts_per_card": 20},  # 25+ cards: 5 s at the limit, not twice that
    )
    a, b = serve(config), serve(config)
    wait_until(
        lambda: {holder(redis_server, t, [a, b]) for t in ("ops", "ops2")} == {a, b},
        20,
        "one target's lease on each replica",
    )
    # Each holder's first card pays for its HTTP client's first request (tens of ms more,
    # more on a busy machine): long enough to eat the limiter's 0.1 s margin against
    # jitter, so the replicas send one card each before the storm, as long-running ones have.
    for target in ("ops", "ops2"):
        assert a.post(f"/alerts/{target}", payload("firing.json")).status_code == 200
    feishu.wait_count("ops", 2)
    bodies = storm(100, 5)
    for i, body in enumerate(bodies):
        replica, target = (a, b)[i % 2], ("ops", "ops2")[i // 2 % 2]
        assert replica.post(f"/alerts/{target}", body).status_code == 200
    # A cheap condition to poll: this process also runs the fake, whose arrival clock
    # must not stall while the test decodes every card in a tight loop.
    wait_until(lambda: drained(redis_server), 120, "an empty outbox", interval=0.25)
    seen = conveyed(feishu.messages("ops"))
    assert set(seen) == {f"Storm-{i}-{j}" for i in range(100) for j in range(5)}
    print(
        f"split storm: {len(feishu.messages('ops'))} cards, by replica"
        f" {cards_sent(a):.0f} + {cards_sent(b):.0f}, refusals {feishu.refused(token='ops')}"
    )
    assert feishu.refused(token="ops") == []  # in particular no rate_limited
    assert max(seen.values()) == 1
    assert cards_sent(a) > 0 and cards_sent(b) > 0  # both replicas did send to the bot


def test_kill_9_of_the_replica_holding_claimed_entries_loses_nothing(
    feishu: FakeFeishu,
    redis_server: RedisServer,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    config = config_for(write_config, redis_server, {"ops": feishu.add_bot("ops")})
    feishu.set_down(True, close=True)  # accepted and claimed, but not sent
    a, b = serve(config), serve(config)
    first = wait_until(lambda: holder(redis_server, "ops", [a, b]), 20, "a lease holder")
    for i, body in enumerate(storm(40, 5)):
        assert (a, b)[i % 2].post("/alerts/ops", body).status_code == 200

    def claimed() -> int:
        with redis_server.client() as client:
            return int(client.xpending(STREAM + "ops", "amfeishu")["pending"])

    wait_until(lambda: claimed() == 40, 20, "the holder to claim all 40")
    first.kill()  # kill -9 with 40 claimed, unacknowledged notifications
    survivor = b if first is a else a
    feishu.set_down(False)
    expected = {f"Storm-{i}-{j}" for i in range(40) for j in range(5)}
    wait_until(lambda: set(conveyed(feishu.messages("ops"))) >= expected, 90, "all 200 alerts")
    wait_until(lambda: claimed() == 0, 20, "every entry acknowledged")
    seen = conveyed(feishu.messages("ops"))
    assert holder(redis_server, "ops", [survivor]) is survivor
    assert max(seen.values()) == 1
    assert [r for r in feishu.refused(token="ops") if r.reason != "down"] == []


def test_redis_down_answers_503_and_loses_nothing_accepted(
    feishu: FakeFeishu,
    redis_server: RedisServer,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    config = config_for(write_config, redis_server, {"ops": feishu.add_bot("ops")})
    replicas = [serve(config), serve(config)]
    statuses: dict[str, int] = {}
    bodies = iter(storm(400, 1))

    def post(count: int, stop: Callable[[], bool] = lambda: False) -> None:
        for _ in range(count):
            body = next(bodies)
            name = body["alerts"][0]["labels"]["alertname"]
            status = replicas[len(statuses) % 2].post("/alerts/ops", body).status_code
            statuses[name] = status
            if stop():
                return

    post(20)
    redis_server.kill()  # appendfsync always: what Redis acknowledged is on disk
    post(200, stop=lambda: sum(s == 503 for s in statuses.values()) >= 4)
    ready = [r.url for r in replicas]
    assert all(_status(f"{url}/-/ready") == 503 for url in ready)
    redis_server.start()  # same port, same append-only file
    wait_until(lambda: all(_status(f"{u}/-/ready") == 200 for u in ready), 30, "ready again")
    post(20)
    codes = sorted(set(statuses.values()))
    accepted = {name for name, status in statuses.items() if status == 200}
    refused = [name for name, status in statuses.items() if status != 200]
    print(f"redis restart: statuses {codes}, {len(accepted)} accepted, {len(refused)} refused")
    assert codes == [200, 503] and len(refused) >= 4
    wait_until(lambda: set(conveyed(feishu.messages("ops"))) >= accepted, 90, "every accepted")
    assert not set(conveyed(feishu.messages("ops"))) & set(refused)  # 503: never queued


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_dead_letters_are_listed_and_replayed_from_redis(
    feishu: FakeFeishu,
    redis_server: RedisServer,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    config = config_for(write_config, redis_server, {"ops": feishu.url_for("not-yet")})
    a, b = serve(config), serve(config)
    assert b.post("/alerts/ops", payload("firing.json")).status_code == 200
    wait_until(
        lambda: sum(r.metric("amfeishu_notifications_total", outcome="dead") for r in (a, b)) == 1,
        20,
        "the dead letter (19001: unknown token)",
    )

    def outbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amfeishu", "outbox", *args, "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = outbox("list")
    assert listed.returncode == 0 and "\tops\t" in listed.stdout, listed.stderr
    assert "1 alert(s)" in listed.stdout and "not-yet" not in listed.stdout
    feishu.add_bot("not-yet")  # the operator fixes the cause
    assert outbox("replay", "--all").returncode == 0
    [card] = feishu.wait_count("not-yet", 1, timeout=20)
    assert "HighCPU" in json.dumps(card)
    assert outbox("list").stdout.strip() == ""
