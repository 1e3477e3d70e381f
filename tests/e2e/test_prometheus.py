"""The whole chain with real parts: Debian's Prometheus evaluates a rule and fires, Debian's
Alertmanager notifies `amfeishu serve`, which delivers cards to a Feishu-like server.

The rule's truth is a gauge the test serves (tests/support/prometheus.py Switch), so the
test decides when the alert fires and when it resolves. The card's "Source" button is the
alert's generatorURL (docs/templates.md, `links.source`): it must open this Prometheus
with the rule's expression.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import need_binary
from tests.support.alertmanager import Alertmanager, webhook_config
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu, wait_until
from tests.support.prometheus import Prometheus, Switch, alert_rule, prometheus_config

SECRET = "SEC-prom-signing-secret"
TOKEN = "bearer-prom-token"
ALERT = "TestSwitchOn"
EXPR = "test_switch == 1"
# Scrape and evaluation every 1s, group_wait 1s; Prometheus hands new targets to its
# scraper and notifier only every 5s: under 10s in practice, 60s leaves room for a busy box.
DEADLINE = 60.0


@pytest.fixture
def switch() -> Iterator[Switch]:
    with Switch("test_switch", 0) as served:
        yield served


@pytest.fixture
def chain(
    tmp_path: Path,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
    switch: Switch,
) -> Iterator[tuple[Prometheus, Amfeishu]]:
    """Prometheus → Alertmanager → amfeishu (target `ops`) → Feishu bot `ops-token`."""
    prometheus_binary = need_binary("prometheus", "prometheus")
    alertmanager_binary = need_binary("prometheus-alertmanager", "prometheus-alertmanager")
    hook = feishu.add_bot("ops-token", secret=SECRET)
    server = serve(
        write_config(
            {
                "auth": {"bearer_token": TOKEN},
                "targets": {"ops": {"webhook": hook, "secret": SECRET, "language": "en"}},
            }
        )
    )
    am_config = webhook_config(f"{server.url}/alerts/ops", TOKEN)
    am_config["global"] = {"resolve_timeout": "5s"}
    am = Alertmanager(alertmanager_binary, am_config, workdir=tmp_path)
    rules = [alert_rule(ALERT, EXPR, annotations={"summary": "the test switch is on"})]
    prometheus = Prometheus(
        prometheus_binary,
        prometheus_config(alertmanager=f"127.0.0.1:{am.port}", scrape=[switch.address]),
        rules,
        workdir=tmp_path,
    )
    try:
        am.start()
        prometheus.start()
        yield prometheus, server
    finally:  # also when a start timed out: no process outlives the test
        prometheus.stop()
        am.stop()


def text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Every button in the card: its label → the URL it opens."""
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("tag") == "button":
                found[node["text"]["content"]] = node["behaviors"][0]["default_url"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message["card"])
    return found


def test_a_rule_firing_in_prometheus_arrives_then_resolves(
    feishu: FakeFeishu,
    switch: Switch,
    chain: tuple[Prometheus, Amfeishu],
) -> None:
    prometheus, server = chain
    started = time.monotonic()
    switch.set(1)
    [firing] = feishu.wait_count("ops-token", 1, timeout=DEADLINE)
    to_firing = time.monotonic() - started
    assert firing["card"]["header"]["title"]["content"] == f"[FIRING:1] {ALERT}"
    assert firing["card"]["header"]["template"] == "red"
    assert "the test switch is on" in text(firing)
    assert firing["sign"] and firing["timestamp"]  # the fake checked the signature

    source = urlsplit(buttons(firing)["Source"])
    assert (source.scheme, source.netloc) == ("http", f"127.0.0.1:{prometheus.port}")
    assert parse_qs(source.query)["g0.expr"] == [EXPR]

    switch.set(0)
    started = time.monotonic()
    cards = feishu.wait_count("ops-token", 2, timeout=DEADLINE)
    to_resolved = time.monotonic() - started
    resolved = cards[1]
    assert resolved["card"]["header"]["title"]["content"] == f"[RESOLVED] {ALERT}"
    assert resolved["card"]["header"]["template"] == "green"
    wait_until(lambda: prometheus.alerts() == [], DEADLINE, "Prometheus holding no alert")
    assert feishu.refusals == []
    assert server.metric("amfeishu_alerts_received_total", target="ops") == 2
    print(f"switch on → firing card {to_firing:.1f}s; off → resolved card {to_resolved:.1f}s")
