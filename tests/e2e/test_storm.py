"""A storm at the default config, through the real `amfeishu serve`, on SQLite and on Redis:
digests name every alert, within Feishu's rate and size limits; then normal cards again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_binary
from tests.e2e.test_reliability import conveyed, storm
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu, wait_until
from tests.support.redis_server import RedisServer

NOTIFICATIONS, ALERTS = 60, 50  # 3,000 alerts: twice what the bot sends in ten seconds
STORM_TITLE = "[STORM]"


@pytest.fixture(params=["sqlite", "redis"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {"path": str(tmp_path / "outbox.db")}
        return
    binary = need_binary("redis-server", "redis-server")
    with RedisServer(binary, tmp_path / "redis") as server:
        yield {"redis_url": server.url}


def title(message: dict[str, Any]) -> str:
    return str(message["card"]["header"]["title"]["content"])


def test_a_storm_becomes_digests_naming_every_alert_then_normal_cards_again(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    storage: dict[str, Any],
) -> None:
    hook = feishu.add_bot("ops")  # Feishu's own limits: 5/s, 100/min, 20 KB
    config = write_config(
        {"storage": storage, "targets": {"ops": {"webhook": hook, "language": "en"}}}
    )
    server = serve(config)
    bodies = storm(NOTIFICATIONS, ALERTS)
    for body in bodies:
        assert server.post("/alerts/ops", body).status_code == 200
    total = NOTIFICATIONS * ALERTS
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == total, 120, "every alert named")
    messages = feishu.messages("ops")
    digests = [m for m in messages if title(m).startswith(STORM_TITLE)]
    assert digests, [title(m) for m in messages]
    assert len(messages) <= 30, len(messages)
    assert feishu.refused(token="ops") == []
    assert max(r.size for r in feishu.received) <= 20_000
    wait_until(lambda: server.metric("amfeishu_outbox_depth") == 0, 30, "an empty backlog")

    after = storm(1, 2)[0]
    after["groupKey"] = "after-the-storm"
    for alert in after["alerts"]:
        alert["labels"]["alertname"] = "AfterTheStorm"
        alert["fingerprint"] = "f" + alert["fingerprint"][1:]
    assert server.post("/alerts/ops", after).status_code == 200
    wait_until(
        lambda: any("AfterTheStorm" in json.dumps(m) for m in feishu.messages("ops")),
        30,
        "the card after the storm",
    )
    last = feishu.messages("ops")[-1]
    assert title(last).startswith("[FIRING:2]"), title(last)
