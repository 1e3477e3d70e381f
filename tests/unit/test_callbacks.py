"""POST /feishu/callback/{app} through the ASGI app, with the cards delivered to a Feishu-like
Open API server and the silences made in an Alertmanager-like one: every check refuses
and changes nothing, every click answers within 3 s with a zh/en toast and the card."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from amfeishu.app import build_app
from amfeishu.backend.cards import CardRecord
from amfeishu.cards.actions import group_id
from amfeishu.config.load import build_config
from amfeishu.service import Service
from tests.support.callbacks import (
    FakeAlertmanager,
    button,
    callback_values,
    click,
    signed,
    url_verification,
)
from tests.support.feishu_openapi_fake import FakeOpenAPI, Message
from tests.support.processes import free_port, wait_until

APP_ID, SECRET, CHAT = "cli_clicks0001", "clicks-secret-0001", "oc_oncall"
TOKEN, KEY = "verification-token-0001", "encrypt-key-0001"
PLAIN_ID, PLAIN_TOKEN = "cli_plain0001", "plain-token-0001"
GROUP_KEY = '{}/{}:{alertname="DiskFull"}'
ANSWER_WITHIN = 3.0  # Feishu's deadline for a callback answer
Reply = Any  # TestClient's response: httpx's, or httpx2's where that is installed


def alert(instance: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": instance, "severity": "critical"} | labels,
        "annotations": {"summary": f"disk full on {instance}"},
        "startsAt": "2026-11-28T13:57:05Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T14:57:05Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": f"fp-{instance}",
    }


def notification(*alerts: dict[str, Any], group_key: str = GROUP_KEY) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group_key,
        "status": "firing",
        "receiver": "feishu",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts),
    }


@dataclass
class World:
    client: TestClient
    service: Service
    feishu: FakeOpenAPI
    am: FakeAlertmanager

    def deliver(self, body: dict[str, Any], target: str = "chat") -> Message:
        """Post a notification; the group's card once Feishu holds this version of it and
        the card registry knows it (the notification counts as delivered after that)."""
        before = {m.message_id: len(m.updates) for m in self.feishu.sent()}
        delivered = self.delivered(target)
        response = self.client.post(f"/alerts/{target}", json=body)
        assert response.status_code == 200, response.text

        def changed() -> Message | None:
            if self.delivered(target) <= delivered:
                return None
            for m in self.feishu.sent():
                if before.get(m.message_id, -1) < len(m.updates):
                    return m
            return None

        message: Message = wait_until(changed, 10, "the card sent or updated")
        return message

    def delivered(self, target: str) -> float:
        labels = {"target": target, "outcome": "delivered"}
        value = self.service.metrics.registry.get_sample_value(
            "amfeishu_notifications_total", labels
        )
        return value or 0.0

    def record(self, group_key: str = GROUP_KEY, target: str = "chat") -> CardRecord | None:
        return asyncio.run(self.service.cards.get(target, group_id(group_key)))

    def post(self, raw: bytes, headers: dict[str, str], app: str = "oncall") -> tuple[Reply, float]:
        started = time.monotonic()
        response = self.client.post(f"/feishu/callback/{app}", content=raw, headers=headers)
        return response, time.monotonic() - started

    def click(self, value: dict[str, Any], **kw: Any) -> tuple[Reply, float]:
        return self.post(*signed(click(APP_ID, TOKEN, value, **kw), KEY))


def make_world(feishu: FakeOpenAPI, am_url: str, am: FakeAlertmanager) -> Iterator[World]:
    config = build_config(
        {
            "storage": {"path": ":memory:"},
            "apps": {
                "oncall": {
                    "app_id": APP_ID,
                    "app_secret": SECRET,
                    "domain": feishu.base_url,
                    "verification_token": TOKEN,
                    "encrypt_key": KEY,
                },
                "plain": {
                    "app_id": PLAIN_ID,
                    "app_secret": SECRET,
                    "domain": feishu.base_url,
                    "verification_token": PLAIN_TOKEN,
                },
            },
            "alertmanager": {"url": am_url},
            "targets": {
                "chat": {"app": "oncall", "chat_id": CHAT, "language": "en"},
                "plainchat": {"app": "plain", "chat_id": "oc_plain"},
            },
        },
        env={},
    )
    service = Service.from_config(config)
    with TestClient(build_app(service)) as client:
        yield World(client, service, feishu, am)


@pytest.fixture
def feishu() -> Iterator[FakeOpenAPI]:
    with FakeOpenAPI() as server:
        server.add_app(APP_ID, SECRET)
        server.add_app(PLAIN_ID, SECRET)
        yield server


@pytest.fixture
def am() -> Iterator[FakeAlertmanager]:
    with FakeAlertmanager() as server:
        yield server


@pytest.fixture
def world(feishu: FakeOpenAPI, am: FakeAlertmanager) -> Iterator[World]:
    yield from make_world(feishu, am.url, am)


@pytest.fixture
def unreachable(feishu: FakeOpenAPI, am: FakeAlertmanager) -> Iterator[World]:
    yield from make_world(feishu, f"http://127.0.0.1:{free_port()}", am)


def toast(response: Reply) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["toast"]
    assert set(body["i18n"]) == {"zh_cn", "en_us"}
    assert body["content"] in (body["i18n"]["zh_cn"], body["i18n"]["en_us"])  # the target's
    return body


def answered_card(response: Reply) -> dict[str, Any]:
    card = response.json()["card"]
    assert card["type"] == "raw"
    data: dict[str, Any] = card["data"]
    assert data["schema"] == "2.0" and data["config"]["update_multi"] is True
    return data


# -- URL verification --


def test_url_verification_plain(world: World) -> None:
    response, _ = world.post(*signed(url_verification(PLAIN_TOKEN, "c-plain"), None), app="plain")
    assert (response.status_code, response.json()) == (200, {"challenge": "c-plain"})
    refused, _ = world.post(*signed(url_verification("wrong", "c-plain"), None), app="plain")
    assert refused.status_code == 401 and "c-plain" not in refused.text


@pytest.mark.parametrize("signature", ["signed", "unsigned"])
def test_url_verification_encrypted(world: World, signature: str) -> None:
    raw, headers = signed(url_verification(TOKEN, "c-secret"), KEY)
    if signature == "unsigned":  # whether Feishu signs the URL check is undocumented
        headers = {"Content-Type": "application/json"}
    response, _ = world.post(raw, headers)
    assert (response.status_code, response.json()) == (200, {"challenge": "c-secret"})


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: signed(url_verification("wrong", "c"), KEY), id="wrong token"),
        pytest.param(
            lambda: signed(url_verification(TOKEN, "c"), KEY, sign_with="forged"), id="forged"
        ),
        pytest.param(
            lambda: signed(url_verification(TOKEN, "c"), "another-key"), id="other encrypt key"
        ),
        pytest.param(lambda: signed(url_verification(TOKEN, "c"), None), id="not encrypted"),
    ],
)
def test_url_verification_encrypted_refused(world: World, forge: Any) -> None:
    response, _ = world.post(*forge())
    assert response.status_code == 401, response.text
    assert "challenge" not in response.text


# -- clicks --


def test_ack_shows_the_person_and_later_updates_keep_it(world: World) -> None:
    message = world.deliver(notification(alert("db1")))
    response, took = world.click(button(message.body, "ack"), open_id="ou_alice")
    assert took < ANSWER_WITHIN
    assert toast(response) | {"i18n": None} == {
        "type": "success",
        "content": "Acknowledged",
        "i18n": None,
    }
    assert toast(response)["i18n"]["zh_cn"] == "已认领"
    card = json.dumps(answered_card(response), ensure_ascii=False)
    assert "Acknowledged by <at id=ou_alice></at>" in card
    assert "ack" not in [v["action"] for v in callback_values(answered_card(response))]
    record = world.record()
    assert record is not None and record.acked_by == "ou_alice"
    assert world.am.requests == []  # an ack never touches Alertmanager

    updated = world.deliver(notification(alert("db1"), alert("db2")))
    assert updated.message_id == message.message_id and "db2" in updated.content
    assert "Acknowledged by <at id=ou_alice></at>" in updated.content
    assert "ack" not in [v["action"] for v in callback_values(updated.body)]


def test_silence_then_unsilence(world: World) -> None:
    message = world.deliver(notification(alert("db1"), alert("db2")))
    response, took = world.click(button(message.body, "silence", duration="1h"), open_id="ou_bob")
    assert took < ANSWER_WITHIN
    assert toast(response)["i18n"]["en_us"] == "Silenced for 1h"
    (silence,) = world.am.active()
    # exactly what both alerts share: never broader than the card
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {
        "alertname": "DiskFull",
        "severity": "critical",
    }
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"])
    assert silence["createdBy"] == "feishu:ou_bob"
    assert "Feishu card" in silence["comment"]
    card = answered_card(response)
    assert "Silenced until" in json.dumps(card) and "<at id=ou_bob></at>" in json.dumps(card)
    unsilence = button(card, "unsilence")
    assert unsilence["silence_id"] == silence["id"]
    assert "silence" not in [v["action"] for v in callback_values(card)]

    response, took = world.click(unsilence, open_id="ou_bob")
    assert took < ANSWER_WITHIN
    assert toast(response)["i18n"]["en_us"] == "Silence expired"
    assert world.am.active() == []
    card = answered_card(response)
    assert "Silenced until" not in json.dumps(card)
    assert [v.get("duration") for v in callback_values(card) if v["action"] == "silence"] == [
        "1h",
        "4h",
        "24h",
    ]
    record = world.record()
    assert record is not None and record.silence_ids == [] and record.silenced_until == 0


def test_alerts_sharing_no_label_get_one_silence_each_and_one_unsilence(world: World) -> None:
    a = alert("db1") | {"labels": {"alertname": "DiskFull", "instance": "db1"}}
    b = alert("db2") | {"labels": {"job": "node", "instance": "db2"}}
    c = alert("db3") | {"labels": {"team": "db"}}
    message = world.deliver(notification(a, b, c))
    world.am.delay = 1.2  # each call slow: one after another they would take 3.6 s
    response, took = world.click(button(message.body, "silence", duration="4h"))
    assert took < ANSWER_WITHIN
    assert toast(response)["type"] == "success"
    matchers = sorted(
        tuple(sorted((m["name"], m["value"]) for m in s["matchers"])) for s in world.am.active()
    )
    assert matchers == [
        (("alertname", "DiskFull"), ("instance", "db1")),
        (("instance", "db2"), ("job", "node")),
        (("team", "db"),),
    ]
    world.am.delay = 0
    response, _ = world.click(button(answered_card(response), "unsilence"))
    assert toast(response)["type"] == "success"
    assert world.am.active() == []


def test_an_old_unsilence_button_never_expires_a_later_silence(world: World) -> None:
    message = world.deliver(notification(alert("db1")))
    first, _ = world.click(button(message.body, "silence", duration="1h"))
    old_unsilence = button(answered_card(first), "unsilence")
    again, _ = world.click(old_unsilence)
    second, _ = world.click(button(answered_card(again), "silence", duration="24h"))
    (current,) = world.am.active()
    response, _ = world.click(old_unsilence)  # a stale card in someone's client
    assert toast(response)["type"] == "success"
    assert [s["id"] for s in world.am.active()] == [current["id"]]
    record = world.record()
    assert record is not None and record.silence_ids == [current["id"]]
    assert button(answered_card(second), "unsilence")["silence_id"] == current["id"]


def test_a_plain_app_checks_the_event_time(world: World) -> None:
    message = world.deliver(notification(alert("db1")), target="plainchat")
    value = button(message.body, "ack")
    stale = click(PLAIN_ID, PLAIN_TOKEN, value, create_time=time.time() - 301)
    response, _ = world.post(*signed(stale, None), app="plain")
    assert response.status_code == 401
    fresh = click(PLAIN_ID, PLAIN_TOKEN, value)
    response, _ = world.post(*signed(fresh, None), app="plain")
    assert toast(response)["type"] == "success"


# -- refusals: each answered with its status, nothing changed --


def _refusals() -> list[Any]:
    def silence_click(value: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return click(APP_ID, TOKEN, value, **kw)

    def forged(v: dict[str, Any]) -> Any:
        return signed(silence_click(v), KEY, sign_with="not-the-key")

    def tampered(v: dict[str, Any]) -> Any:
        raw, headers = signed(silence_click(v), KEY)
        return raw.replace(b'"}', b'A"}'), headers

    def unsigned(v: dict[str, Any]) -> Any:
        raw, _ = signed(silence_click(v), KEY)
        return raw, {"Content-Type": "application/json"}

    def plain(v: dict[str, Any]) -> Any:
        return signed(silence_click(v), None)

    def wrong_token(v: dict[str, Any]) -> Any:
        return signed(click(APP_ID, "not-the-token", v), KEY)

    def stale(v: dict[str, Any]) -> Any:
        return signed(silence_click(v), KEY, timestamp=time.time() - 301)

    def future(v: dict[str, Any]) -> Any:
        return signed(silence_click(v), KEY, timestamp=time.time() + 301)

    def wrong_app(v: dict[str, Any]) -> Any:
        return signed(click("cli_someoneelse", TOKEN, v), KEY)

    def malformed(v: dict[str, Any]) -> Any:
        return signed(b'{"encrypt": "abc', KEY)

    def not_json(v: dict[str, Any]) -> Any:
        return signed(b"action=silence&duration=1h", KEY)

    def encrypted_not_json(v: dict[str, Any]) -> Any:
        from amfeishu.feishu import crypto

        return signed(json.dumps({"encrypt": crypto.encrypt(b"<xml/>", KEY)}).encode(), KEY)

    def bad_base64(v: dict[str, Any]) -> Any:
        return signed(b'{"encrypt": "%%%not base64%%%"}', KEY)

    return [
        pytest.param(forged, 401, id="forged signature"),
        pytest.param(tampered, 401, id="body changed after signing"),
        pytest.param(unsigned, 401, id="no signature"),
        pytest.param(plain, 401, id="not encrypted"),
        pytest.param(wrong_token, 401, id="wrong verification token"),
        pytest.param(stale, 401, id="stale timestamp"),
        pytest.param(future, 401, id="timestamp in the future"),
        pytest.param(wrong_app, 401, id="wrong app id"),
        pytest.param(malformed, 400, id="malformed JSON"),
        pytest.param(not_json, 400, id="not JSON"),
        pytest.param(
            lambda v: (b"action=silence", {"Content-Type": "text/plain"}),
            401,
            id="not JSON and unsigned",
        ),
        pytest.param(encrypted_not_json, 400, id="decrypts to not JSON"),
        pytest.param(bad_base64, 401, id="encrypt not base64"),
    ]


@pytest.mark.parametrize(("forge", "status"), _refusals())
def test_refused_callbacks_change_nothing(world: World, forge: Any, status: int) -> None:
    message = world.deliver(notification(alert("db1")))
    before = world.record()
    assert before is not None
    raw, headers = forge(button(message.body, "silence", duration="1h"))
    response, took = world.post(raw, headers)
    assert response.status_code == status, response.text
    assert "toast" not in response.text and KEY not in response.text and TOKEN not in response.text
    assert took < ANSWER_WITHIN
    assert world.record() == before
    assert world.am.requests == []
    assert [m.content for m in world.feishu.sent()] == [message.content]


def test_a_replayed_event_is_refused_and_changes_nothing(world: World) -> None:
    message = world.deliver(notification(alert("db1")))
    raw, headers = signed(
        click(APP_ID, TOKEN, button(message.body, "silence", duration="1h"), event_id="ev-1"), KEY
    )
    first, _ = world.post(raw, headers)
    assert toast(first)["type"] == "success"
    after_first = world.record()
    requests = list(world.am.requests)
    replayed, _ = world.post(raw, headers)
    assert replayed.status_code == 401
    assert world.record() == after_first and world.am.requests == requests
    assert len(world.am.active()) == 1


def test_an_unknown_app_is_404(world: World) -> None:
    world.deliver(notification(alert("db1")))
    before = world.record()
    response, _ = world.post(*signed(url_verification(TOKEN), KEY), app="nope")
    assert response.status_code == 404
    assert world.record() == before


@pytest.mark.parametrize(
    "value",
    [
        {"action": "ack", "t": "chat", "g": "0000000000000000"},  # a group it never saw
        {"action": "ack", "t": "nope", "g": "x"},
        {"action": "ack", "t": "plainchat", "g": "x"},  # a target of another app
        {"action": "page", "t": "chat"},
        {"action": "unsilence", "t": "chat", "silence_id": ""},
        {},
    ],
)
def test_clicks_it_cannot_place_answer_a_toast_and_change_nothing(
    world: World, value: dict[str, Any]
) -> None:
    message = world.deliver(notification(alert("db1")))
    before = world.record()
    if value.get("g") == "x":
        value = value | {"g": group_id(GROUP_KEY)}
    if value.get("action") in ("page", "unsilence"):
        value = value | {"g": group_id(GROUP_KEY)}
    response, _ = world.click(value)
    assert toast(response)["type"] == "error"
    assert world.record() == before and world.am.requests == []
    assert [m.content for m in world.feishu.sent()] == [message.content]


def test_a_silence_duration_not_offered_is_refused(world: World) -> None:
    message = world.deliver(notification(alert("db1")))
    before = world.record()
    value = button(message.body, "silence", duration="1h") | {"duration": "9999h"}
    response, _ = world.click(value)
    assert toast(response)["type"] == "error"
    assert world.record() == before and world.am.active() == []


# -- Alertmanager down or slow: an error toast within 3 s, nothing changed --


def test_alertmanager_unreachable(unreachable: World) -> None:
    message = unreachable.deliver(notification(alert("db1")))
    before = unreachable.record()
    response, took = unreachable.click(button(message.body, "silence", duration="1h"))
    body = toast(response)
    assert took < ANSWER_WITHIN
    assert body["type"] == "error" and "card" not in response.json()
    assert body["i18n"]["en_us"].startswith("Alertmanager failed; nothing changed")
    assert "cannot reach Alertmanager" in body["i18n"]["en_us"]
    assert unreachable.record() == before


def test_alertmanager_slow(world: World) -> None:
    message = world.deliver(notification(alert("db1")))
    before = world.record()
    world.am.delay, world.am.acts = 10.0, False  # sleeps far past the 2 s budget
    response, took = world.click(button(message.body, "silence", duration="1h"))
    body = toast(response)
    print(f"slow Alertmanager: the error toast came after {took:.2f}s")
    assert 2.0 <= took < ANSWER_WITHIN
    assert body["type"] == "error"
    assert "did not answer within 2s" in body["i18n"]["en_us"]
    assert world.record() == before and world.am.active() == []


def test_alertmanager_refusing_one_of_two_silences_undoes_the_other(world: World) -> None:
    a = alert("db1") | {"labels": {"alertname": "DiskFull", "instance": "db1"}}
    b = alert("db2") | {"labels": {"instance": "db2"}}  # shares nothing with a
    message = world.deliver(notification(a, b))
    before = world.record()
    original = world.am.answer

    def refuse_db2(method: str, path: str, body: bytes, auth: str = "") -> tuple[int, Any]:
        if b'"db2"' in body:
            return 400, "bad matchers"
        return original(method, path, body, auth)

    world.am.answer = refuse_db2  # type: ignore[method-assign]
    response, _ = world.click(button(message.body, "silence", duration="1h"))
    assert toast(response)["type"] == "error"
    assert world.record() == before
    wait_until(lambda: world.am.active() == [], 10, "the half-made silence expired again")
