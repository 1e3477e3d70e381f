"""Storm digests: every alert named once, packed up to the size limit, zh and en, and the
worker switching to digests when the bot falls ten seconds behind and back when it is done."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from amfeishu.cards import plan
from amfeishu.cards.checks import card_problem
from amfeishu.cards.storm import groups_of, storm_alerts
from amfeishu.config.load import build_config
from amfeishu.feishu.webhook import MAX_BODY_BYTES, body_size
from amfeishu.generation import Generation, renderer_for
from amfeishu.models import Notification, parse_notification
from benchmarks.payloads import notification
from tests.unit.test_worker import FakeSink, World, run

NAME = re.compile(r"Storm-\d+-\d+(?![\d-])")


def storm(notifications: int, alerts: int = 50, distinct: bool = True) -> list[dict[str, Any]]:
    return [
        notification(
            f"Storm-{i}",
            alerts,
            names=[f"Storm-{i}-{j}" for j in range(alerts)] if distinct else None,
        )
        for i in range(notifications)
    ]


def merged(payloads: list[dict[str, Any]]) -> Notification:
    parsed = [parse_notification(p) for p in payloads]
    return parsed[0].with_alerts([a for n in parsed for a in n.alerts])


def config(**target: Any) -> Any:
    return build_config({"storage": {"path": ":memory:"}, "targets": {"ops": target}}, env={})


def names_in(messages: list[dict[str, Any]]) -> list[str]:
    return [name for m in messages for name in NAME.findall(json.dumps(m, ensure_ascii=False))]


def test_alerts_of_a_group_are_named_by_the_labels_that_tell_them_apart() -> None:
    n = merged(storm(1, 4, distinct=False))  # one alert name; pods differ
    named = storm_alerts(n.alerts)
    assert [s.name for s in named] == [f"api-{j}-7f9c6d" for j in range(4)]
    [group] = groups_of(named, n)
    assert (group.alertname, group.severity, group.count) == ("Storm-0", "warning", 4)
    assert "filter=%7Balertname%3D%22Storm-0%22%2Cseverity%3D%22warning%22%7D" in group.url


def test_alerts_alone_in_their_group_share_a_line_with_their_host() -> None:
    n = merged(storm(1, 3))
    named = storm_alerts(n.alerts)
    assert [s.name for s in named] == [f"Storm-0-{j} api-{j}-7f9c6d" for j in range(3)]
    [group] = groups_of(named, n)
    assert group.alertname == "" and group.count == 3


def test_firing_comes_before_resolved_and_critical_before_warning() -> None:
    payloads = [notification("Warn", 2), notification("Crit", 2, severity="critical")]
    payloads[0]["alerts"][0]["status"] = "resolved"
    n = merged(payloads)
    order = [(g.firing, g.severity) for g in groups_of(storm_alerts(n.alerts), n)]
    assert order == [(True, "critical"), (True, "warning"), (False, "warning")]


@pytest.mark.parametrize("language", ["zh", "en", "auto"])
def test_ten_thousand_alerts_fill_few_digests_each_naming_every_alert_once(language: str) -> None:
    cfg = config(language=language)
    n = merged(storm(200))
    groups = [{0: {i}} for i in range(len(n.alerts))]
    cards = plan.storm(n, groups, cfg.targets["ops"], renderer_for(cfg), backlog=10_000)
    assert len(cards) <= 20, len(cards)
    for card in cards:
        assert card.digest and card.template_error is None
        assert card_problem(card.message) is None
        assert body_size(card.message) <= MAX_BODY_BYTES
    named = names_in([c.message for c in cards])
    assert len(named) == 10_000 and len(set(named)) == 10_000
    covered = plan.union([c.covers for c in cards])
    assert covered == {0: set(range(10_000))}
    title = cards[0].message["card"]["header"]["title"]
    expected = {"zh": "[告警风暴]", "en": "[STORM]", "auto": "[告警风暴]"}[language]
    assert title["content"].startswith(expected)
    if language == "auto":
        assert title["i18n_content"]["en_us"].startswith("[STORM]")


def test_a_smaller_budget_makes_more_smaller_digests() -> None:
    cfg = config()
    n = merged(storm(10))
    groups = [{0: {i}} for i in range(len(n.alerts))]
    renderer = renderer_for(cfg)
    cards = plan.storm(n, groups, cfg.targets["ops"], renderer, backlog=500, budget=5000)
    assert all(c.size <= 5000 for c in cards) and len(cards) >= 4
    assert len(names_in([c.message for c in cards])) == 500


def test_a_users_storm_template_overrides_and_a_broken_one_falls_back(tmp_path: Path) -> None:
    (tmp_path / "default").mkdir()
    good = '{"msg_type": "text", "content": {"text": "{{ title }}: {{ storm.total }}"}}'
    (tmp_path / "default" / "storm.json.j2").write_text(good)
    cfg = build_config(
        {
            "storage": {"path": ":memory:"},
            "templates": {"dir": str(tmp_path)},
            "targets": {"ops": {}},
        },
        env={},
    )
    n = merged(storm(1, 5))
    named = storm_alerts(n.alerts)
    rendered = renderer_for(cfg).render_storm(n, groups_of(named, n), cfg.targets["ops"])
    assert rendered.error is None
    assert rendered.message == {"msg_type": "text", "content": {"text": "[告警风暴] 5 条告警: 5"}}

    (tmp_path / "default" / "storm.json.j2").write_text('{"msg_type": {{ oops')
    renderer = renderer_for(cfg)
    assert any("storm.json.j2" in p for p in renderer.check(cfg.targets.values()))
    rendered = renderer.render_storm(n, groups_of(named, n), cfg.targets["ops"])
    assert rendered.error is not None and "storm.json.j2" in rendered.error
    assert card_problem(rendered.message) is None  # the safe digest
    assert len(names_in([rendered.message])) == 5


def test_text_targets_get_no_digests() -> None:
    world = World(FakeSink(), Generation(config(msg_type="text"), renderer_for(config())))
    world.current = Generation(config(msg_type="text"), renderer_for(config(msg_type="text")))

    async def scenario() -> None:
        for i, payload in enumerate(storm(40)):  # 2,000 alerts: past the threshold
            await world.put(payload, key=f"k{i}")
        await world.worker.deliver_batch()

    run(scenario())
    assert not world.worker.storm.on
    assert all(m["msg_type"] == "text" for m in world.sink.messages)


def test_the_worker_sends_digests_when_ten_seconds_behind_and_cards_when_done() -> None:
    world = World()

    async def scenario() -> None:
        # 1,450 alerts: under what the bot sends in 10 s (50 cards of 30): normal cards
        for i, payload in enumerate(storm(29)):
            await world.put(payload, key=f"a{i}")
        await world.worker.deliver_batch()
        assert not world.worker.storm.on
        assert not any(
            "[告警风暴]" in json.dumps(m, ensure_ascii=False) for m in world.sink.messages
        )
        # the rest of the storm: 4,000 alerts more, past the threshold
        for i, payload in enumerate(storm(80)):
            payload["groupKey"] += "-b"
            await world.put(payload, key=f"b{i}")
        sent = len(world.sink.messages)
        world.time.wall_now += 60  # what waits is old: no digest is held back
        for _ in range(10):
            if not world.worker.queue:
                break
            await world.worker.deliver_batch()
        digests = world.sink.messages[sent:]
        assert digests and all(
            "[告警风暴]" in m["card"]["header"]["title"]["content"] for m in digests
        )
        assert len(digests) <= 12
        assert not world.worker.queue and not world.worker.storm.on
        # backlog gone: a new notification is a normal card again
        await world.put(notification("After", 2), key="after")
        await world.worker.deliver_batch()
        assert world.sink.messages[-1]["card"]["header"]["title"]["content"].startswith("[告警:2]")

    run(scenario())
    assert world.outcome("delivered") == 29 + 80 + 1


def test_a_digest_far_from_full_waits_for_more_unless_it_is_old() -> None:
    world = World()

    async def scenario() -> None:
        world.worker.storm.on = True  # in a storm; 100 alerts fill a small digest
        for i, payload in enumerate(storm(2)):
            await world.put(payload, key=f"k{i}")
        await world.worker.deliver_batch()
        assert world.sink.messages == []
        assert world.worker.storm.hold_until > world.time.wall_now
        world.time.wall_now = world.worker.storm.hold_until
        await world.worker.deliver_batch()
        assert len(world.sink.messages) == 1
        assert len(names_in(world.sink.messages)) == 100

    run(scenario())


def test_amfeishu_render_storm_prints_the_digests(tmp_path: Path) -> None:
    from tests.support.processes import run_cli

    config = tmp_path / "amfeishu.yml"
    config.write_text('storage: {path: ":memory:"}\ntargets: {ops: {language: en}}\n')
    payload = merged(storm(4))  # 200 alerts
    body = tmp_path / "storm.json"
    body.write_text(json.dumps(payload.to_dict()))
    done = run_cli("render", "--config", str(config), "--target", "ops", "--storm", str(body))
    assert done.returncode == 0, done.stderr
    digests = json.loads(done.stdout)
    assert [title(m) for m in digests] == ["[STORM] 200 alerts"]
    assert len(names_in(digests)) == 200
    html = run_cli(
        "render", "--config", str(config), "--target", "ops", "--storm", "--html", str(body)
    )
    assert html.returncode == 0 and "storm digest 1/1" in html.stdout


def title(message: dict[str, Any]) -> str:
    return str(message["card"]["header"]["title"]["content"])


def test_app_targets_keep_one_card_per_group_in_a_storm() -> None:
    from amfeishu.storm_mode import StormMode

    app = {"app_id": "cli_a1b2c3", "app_secret": "s", "verification_token": "vt"}
    cfg = build_config(
        {
            "storage": {"path": ":memory:"},
            "apps": {"oncall": app},
            "targets": {"chat": {"app": "oncall", "chat_id": "oc_1"}, "hook": {}},
        },
        env={},
    )
    assert not StormMode("chat").check(cfg.targets["chat"], 30, 100_000)
    assert StormMode("hook").check(cfg.targets["hook"], 30, 100_000)
