"""Proven against the real Alertmanager (issue #5): Debian's prometheus-alertmanager posts
its webhook into `amfeishu serve`, which delivers to a Feishu-like server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_binary
from tests.e2e.conftest import EXAMPLES
from tests.support.alertmanager import Alertmanager, alert, resolved, webhook_config
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import ROOT, Amfeishu, free_port, wait_until

SECRET = "SEC-am-signing-secret"
TOKEN = "bearer-am-token"
DEADLINE = 60.0  # group_wait is 1s; Alertmanager's retries back off for a few seconds


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    binary = need_binary("prometheus-alertmanager", "prometheus-alertmanager")
    started: list[Alertmanager] = []

    def start(config: dict[str, Any], name: str = "alertmanager") -> Alertmanager:
        am = Alertmanager(binary, config, workdir=tmp_path, name=name)
        started.append(am)
        return am.start()

    yield start
    for am in started:
        am.stop()


def text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def names(messages: list[dict[str, Any]], pattern: str) -> set[str]:
    return {n for m in messages for n in re.findall(pattern, text(m))}


def ops_server(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    **kwargs: Any,
) -> Amfeishu:
    """amfeishu with bearer auth and one signing bot `ops-token` behind target `ops`."""
    hook = feishu.add_bot("ops-token", secret=SECRET)
    config = write_config(
        {
            "auth": {"bearer_token": TOKEN},
            "targets": {"ops": {"webhook": hook, "secret": SECRET, "language": "en"}},
        }
    )
    return serve(config, **kwargs)


def test_firing_then_resolved_arrive_as_signed_cards(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    alertmanager: Callable[..., Alertmanager],
) -> None:
    server = ops_server(feishu, write_config, serve)
    am = alertmanager(webhook_config(f"{server.url}/alerts/ops", TOKEN))
    alerts = [alert("DiskFull", labels={"instance": "db1:9100"})]
    started = time.monotonic()
    am.post(alerts)
    [firing] = feishu.wait_count("ops-token", 1, timeout=DEADLINE)
    to_firing = time.monotonic() - started
    assert firing["card"]["header"]["template"] == "red"
    assert "DiskFull" in text(firing) and "db1:9100" in text(firing)
    assert firing["sign"] and firing["timestamp"]  # the fake checked the signature

    am.post(resolved(alerts))
    cards = feishu.wait_count("ops-token", 2, timeout=DEADLINE)
    assert cards[1]["card"]["header"]["template"] == "green"
    assert "DiskFull" in text(cards[1])
    assert feishu.refusals == []
    assert server.metric("amfeishu_requests_total", endpoint="alerts_target", status="200") == 2
    print(f"Alertmanager post → firing card: {to_firing:.1f}s (group_wait 1s)")


def test_label_routes_split_alerts_between_two_targets(
    tmp_path: Path,
    feishu: FakeFeishu,
    serve: Callable[..., Amfeishu],
    alertmanager: Callable[..., Alertmanager],
) -> None:
    # The example config users copy, its secrets from the environment.
    env = {
        "AMFEISHU_TOKEN": TOKEN,
        "AMFEISHU_STORAGE": str(tmp_path / "outbox.db"),
        "FEISHU_OPS_WEBHOOK": feishu.add_bot("ops-token", secret="ops-secret"),
        "FEISHU_OPS_SECRET": "ops-secret",
        "FEISHU_DB_WEBHOOK": feishu.add_bot("db-token", secret="db-secret"),
        "FEISHU_DB_SECRET": "db-secret",
    }
    server = serve(EXAMPLES / "amfeishu.yml", env=env)
    am = alertmanager(webhook_config(f"{server.url}/alerts", TOKEN))
    am.post(
        [
            alert("DbReplicationLag", labels={"team": "db", "severity": "warning"}),
            alert("DbDown", labels={"team": "db", "severity": "critical"}),
            alert("WebSlow", labels={"team": "web", "severity": "warning"}),
        ]
    )
    # Three notifications (grouped by alertname) arriving together may merge into one card.
    pattern = r"DbReplicationLag|DbDown|WebSlow"
    for token, expected in (
        ("db-token", {"DbReplicationLag", "DbDown"}),
        ("ops-token", {"DbDown", "WebSlow"}),
    ):
        wait_until(
            lambda t=token, e=expected: names(feishu.messages(t), pattern) >= e,
            DEADLINE,
            f"{sorted(expected)} at {token}",
        )
    assert names(feishu.messages("db-token"), pattern) == {"DbReplicationLag", "DbDown"}
    assert names(feishu.messages("ops-token"), pattern) == {"DbDown", "WebSlow"}
    assert server.metric("amfeishu_alerts_received_total", target="db") == 2
    assert server.metric("amfeishu_alerts_received_total", target="ops") == 2
    assert server.metric("amfeishu_alerts_unrouted_total") == 0
    assert feishu.refusals == []


def test_a_group_of_40_alerts_is_conveyed_in_cards_under_the_size_limit(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    alertmanager: Callable[..., Alertmanager],
) -> None:
    server = ops_server(feishu, write_config, serve)
    am = alertmanager(webhook_config(f"{server.url}/alerts/ops", TOKEN))
    description = "the container restarted more than 5 times in 10 minutes; " * 8
    pods = [f"api-{i:02d}-7f9c" for i in range(40)]
    am.post(
        [
            alert("PodCrashLooping", labels={"pod": p}, annotations={"description": description})
            for p in pods
        ]
    )
    wait_until(
        lambda: names(feishu.messages("ops-token"), r"api-\d\d-7f9c") == set(pods),
        DEADLINE,
        "all 40 pods in cards",
    )
    sizes = [r.size for r in feishu.received if r.token == "ops-token"]
    print(f"one notification of 40 alerts: {len(sizes)} cards, largest {max(sizes)} bytes")
    assert max(sizes) <= 20_000
    assert feishu.refusals == []
    # One notification carried all 40 (max_alerts: 0): split by amfeishu, not by Alertmanager.
    assert server.metric("amfeishu_requests_total", endpoint="alerts_target", status="200") == 1
    assert server.metric("amfeishu_alerts_received_total", target="ops") == 40


def test_an_unclustered_ha_pair_gives_one_card_per_notification(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    alertmanager: Callable[..., Alertmanager],
) -> None:
    server = ops_server(feishu, write_config, serve)
    config = webhook_config(f"{server.url}/alerts/ops", TOKEN)
    pair = [alertmanager(config, name="am-a"), alertmanager(config, name="am-b")]
    # One Prometheus feeds both with the same alerts, startsAt included.
    starts = datetime.now(UTC).replace(microsecond=0)
    alerts = [alert("NodeDown", labels={"instance": f"n{i}"}, starts_at=starts) for i in range(3)]
    for am in pair:
        am.post(alerts)

    def posted() -> float:
        return server.metric("amfeishu_requests_total", endpoint="alerts_target", status="200")

    def deduplicated() -> float:
        return server.metric("amfeishu_notifications_total", outcome="deduplicated")

    wait_until(lambda: posted() == 2, DEADLINE, "both Alertmanagers' firing notifications")
    wait_until(lambda: deduplicated() >= 1, DEADLINE, "the duplicate dropped")
    wait_until(lambda: server.metric("amfeishu_outbox_depth") == 0, DEADLINE, "an empty outbox")
    [firing] = feishu.messages("ops-token")
    assert firing["card"]["header"]["template"] == "red"

    resolve = resolved(alerts)
    for am in pair:
        am.post(resolve)
    wait_until(lambda: posted() == 4, DEADLINE, "both Alertmanagers' resolved notifications")
    wait_until(lambda: deduplicated() >= 2, DEADLINE, "the second duplicate dropped")
    wait_until(lambda: server.metric("amfeishu_outbox_depth") == 0, DEADLINE, "an empty outbox")
    cards = feishu.messages("ops-token")
    assert [c["card"]["header"]["template"] for c in cards] == ["red", "green"]
    assert feishu.refusals == []


def test_a_wrong_bearer_token_is_refused_and_nothing_is_delivered(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    alertmanager: Callable[..., Alertmanager],
) -> None:
    server = ops_server(feishu, write_config, serve)
    am = alertmanager(webhook_config(f"{server.url}/alerts/ops", "not-the-token"))
    am.post([alert("DiskFull")])
    wait_until(
        lambda: "unexpected status code 401" in am.logs(), DEADLINE, "Alertmanager logging the 401"
    )
    assert server.metric("amfeishu_requests_total", status="401") >= 1
    assert server.metric("amfeishu_alerts_received_total") == 0
    assert feishu.received == [] and feishu.requests == 0
    assert "not-the-token" not in server.logs()


def test_alertmanager_retries_while_amfeishu_is_down(
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    alertmanager: Callable[..., Alertmanager],
) -> None:
    port = free_port()  # fixed, so Alertmanager finds the restarted amfeishu
    server = ops_server(feishu, write_config, serve, port=port)
    config = server.config
    am = alertmanager(webhook_config(f"http://127.0.0.1:{port}/alerts/ops", TOKEN))
    am.post([alert("Before")])
    feishu.wait_count("ops-token", 1, timeout=DEADLINE)

    assert server.stop() == 0
    am.post([alert("WhileDown")])
    wait_until(
        lambda: "connection refused" in am.logs(), DEADLINE, "Alertmanager failing to connect"
    )
    serve(config, port=port)
    cards = feishu.wait_count("ops-token", 2, timeout=DEADLINE)
    assert "WhileDown" in text(cards[1])
    assert feishu.refusals == []


def test_the_examples_pass_their_checkers(tmp_path: Path) -> None:
    amtool = need_binary("amtool", "prometheus-alertmanager")
    check = subprocess.run(
        [amtool, "check-config", str(EXAMPLES / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout

    secrets = {
        "AMFEISHU_TOKEN": "t0ken",
        "FEISHU_OPS_WEBHOOK": "https://open.feishu.cn/open-apis/bot/v2/hook/ops-token",
        "FEISHU_OPS_SECRET": "ops-secret",
        "FEISHU_DB_WEBHOOK": "https://open.feishu.cn/open-apis/bot/v2/hook/db-token",
        "FEISHU_DB_SECRET": "db-secret",
    }
    base = {k: v for k, v in os.environ.items() if k not in secrets and k != "AMFEISHU_STORAGE"}

    def check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amfeishu", "check-config", str(EXAMPLES / "amfeishu.yml")],
            cwd=ROOT,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = check_config(secrets)
    assert ok.returncode == 0, ok.stderr
    assert "2 target(s) (ops, db)" in ok.stderr
    missing = check_config({})
    assert missing.returncode == 1
    for name in secrets:  # every secret comes from the environment, and is named when unset
        assert f"environment variable {name} is not set" in missing.stderr
