"""AppSink against the Feishu-like Open API server: one card per alert group, updated in
place, replies under it, a new card when the old one is gone or the group fires again,
and a uuid that makes a resend land on the same message."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from amfeishu.backend.base import Entry, StorageError
from amfeishu.backend.cards import FIRING, RESOLVED, CardRecord, CardRegistry, MemoryCards
from amfeishu.cards import plan
from amfeishu.cards.actions import app_context, group_id
from amfeishu.cards.plan import Card, Queued
from amfeishu.cards.text import zone
from amfeishu.config.load import build_config
from amfeishu.config.types import Config, Target
from amfeishu.feishu.answers import Answer, Outcome, Reason
from amfeishu.feishu.openapi import AppResult, FeishuApp
from amfeishu.generation import renderer_for
from amfeishu.ratelimit import Unlimited
from amfeishu.sinks import AppSink
from tests.support.feishu_openapi_fake import FakeOpenAPI, Message

APP_ID, SECRET, CHAT = "cli_sink0001", "sink-secret-0001", "oc_oncall"
GROUP_KEY = '{}/{}:{alertname="DiskFull"}'
T = TypeVar("T")
_ids = itertools.count(1)


@pytest.fixture
def fake() -> Iterator[FakeOpenAPI]:
    with FakeOpenAPI() as server:
        server.add_app(APP_ID, SECRET)
        yield server


def make_config(fake: FakeOpenAPI, **target: Any) -> Config:
    receiver = {"app": "oncall", "chat_id": CHAT, "language": "en", **target}  # None: no key
    return build_config(
        {
            "storage": {"path": ":memory:"},
            "apps": {
                "oncall": {
                    "app_id": APP_ID,
                    "app_secret": SECRET,
                    "domain": fake.base_url,
                    "verification_token": "vt",
                }
            },
            "targets": {"chat": {k: v for k, v in receiver.items() if v is not None}},
        },
        env={},
    )


def alert(instance: str, severity: str = "warning", status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": instance, "severity": severity},
        "annotations": {"summary": f"disk full on {instance}"},
        "startsAt": "2026-11-28T13:57:05Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T14:57:05Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": f"fp-{instance}",
    }


def notification(*alerts: dict[str, Any], group_key: str = GROUP_KEY) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": group_key,
        "status": "firing" if firing else "resolved",
        "receiver": "feishu",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts),
    }


@dataclass
class Harness:
    """An AppSink wired to the fake, and a way to plan the group's card as the worker does."""

    config: Config
    sink: AppSink
    cards: CardRegistry
    updates: list[str] = field(default_factory=list)

    @property
    def target(self) -> Target:
        return self.config.targets["chat"]

    async def card(self, body: dict[str, Any], entry_id: int | None = None) -> Card:
        entry = Entry(
            entry_id if entry_id is not None else next(_ids),
            "chat",
            json.dumps(body).encode(),
            f"dedup-{time.monotonic_ns()}",
            "trace-0001",
            time.time(),
        )
        group = group_id(body["groupKey"])
        record = await self.cards.get("chat", group)
        delivery = self.target.app
        assert delivery is not None
        firing = any(a["status"] == "firing" for a in body["alerts"])
        app = app_context(record, delivery, "chat", group, "en", zone("UTC"), firing, time.time())
        card, _ = plan.group_card([Queued(entry)], self.target, renderer_for(self.config), app)
        assert card is not None
        return card

    async def send(self, body: dict[str, Any], entry_id: int | None = None) -> Answer:
        return await self.sink.send(await self.card(body, entry_id))

    async def record(self, body: dict[str, Any] | None = None) -> CardRecord:
        got = await self.cards.get("chat", group_id((body or notification())["groupKey"]))
        assert got is not None
        return got


def run(
    fake: FakeOpenAPI,
    body: Callable[[Harness], Awaitable[T]],
    *,
    cards: CardRegistry | None = None,
    app_class: type[FeishuApp] = FeishuApp,
    **target: Any,
) -> T:
    async def go() -> T:
        config = make_config(fake, **target)
        app = app_class(APP_ID, SECRET, fake.base_url)
        delivery = config.targets["chat"].app
        assert delivery is not None
        registry = cards or MemoryCards()
        harness = Harness(
            config, AppSink(app, delivery, "chat", registry, Unlimited(), "en"), registry
        )
        harness.sink.on_update = harness.updates.append
        try:
            return await body(harness)
        finally:
            await app.aclose()

    return asyncio.run(go())


def only_message(fake: FakeOpenAPI) -> Message:
    sent = fake.sent(CHAT)
    assert len(sent) == 1, [m.message_id for m in sent]
    return sent[0]


def card_text(message: Message) -> str:
    return message.content


def reply_texts(fake: FakeOpenAPI, message: Message) -> list[str]:
    return [json.loads(fake.messages[r].content)["text"] for r in message.replies]


def test_the_first_card_is_sent_and_its_message_id_kept(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> tuple[Answer, CardRecord]:
        return await h.send(notification(alert("db1"))), await h.record()

    answer, record = run(fake, body)
    message = only_message(fake)
    assert answer.outcome is Outcome.DELIVERED
    assert (record.message_id, record.state, record.severity) == (
        message.message_id,
        FIRING,
        "warning",
    )
    assert record.payload["alerts"][0]["labels"]["instance"] == "db1"
    assert message.uuid and message.uuid.startswith("amf-") and len(message.uuid) <= 50
    assert message.body["config"]["update_multi"] is True
    assert message.body["header"]["template"] == "orange"
    assert message.replies == []


def test_the_next_card_of_the_group_updates_the_same_message(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> list[Answer]:
        return [
            await h.send(notification(alert("db1"))),
            await h.send(notification(alert("db1"), alert("db2"))),
        ]

    answers = run(fake, body)
    message = only_message(fake)
    assert [a.outcome for a in answers] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(message.updates) == 1
    assert "db2" in message.content and "[FIRING:2]" in message.content
    assert message.replies == []  # the same severity: nobody to ping


def test_resolved_turns_the_card_green_with_one_reply(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> tuple[list[str], CardRecord]:
        await h.send(notification(alert("db1")))
        await h.send(notification(alert("db1", status="resolved")))
        await h.send(notification(alert("db1", status="resolved")))  # said again: no reply
        return h.updates, await h.record()

    updates, record = run(fake, body)
    message = only_message(fake)
    assert message.body["header"]["template"] == "green"
    assert [json.loads(u)["header"]["template"] for u in message.updates] == ["green", "green"]
    assert reply_texts(fake, message) == ["✅ Resolved: DiskFull"]
    assert updates == ["delivered", "delivered"]
    assert record.state == RESOLVED


def test_a_raised_severity_gets_a_reply(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> None:
        await h.send(notification(alert("db1", "warning")))
        await h.send(notification(alert("db1", "warning"), alert("db2", "critical")))
        await h.send(notification(alert("db1", "critical"), alert("db2", "critical")))
        await h.send(notification(alert("db1", "warning")))  # lowered: no reply

    run(fake, body)
    message = only_message(fake)
    assert reply_texts(fake, message) == ["⬆️ Now critical: DiskFull"]
    assert len(message.updates) == 3
    assert message.body["header"]["template"] == "orange"


@pytest.mark.parametrize("how", ["recall", "delete", "age"])
def test_a_card_that_cannot_be_updated_is_replaced_by_a_new_one(
    fake: FakeOpenAPI, how: str
) -> None:
    async def body(h: Harness) -> tuple[str, str, list[str]]:
        await h.send(notification(alert("db1")))
        first = (await h.record()).message_id
        if how == "age":
            fake.age(first, 15 * 86400)  # past Feishu's 14 days
        else:
            getattr(fake, how)(first)
        answer = await h.send(notification(alert("db1"), alert("db2")))
        assert answer.outcome is Outcome.DELIVERED
        second = (await h.record()).message_id
        await h.send(notification(alert("db1"), alert("db2"), alert("db3")))
        return first, second, h.updates

    first, second, updates = run(fake, body)
    assert second != first
    assert [m.message_id for m in fake.sent(CHAT)] == [first, second]
    assert updates == ["gone", "delivered"]
    assert "db3" in fake.messages[second].content  # the new card is the group's card now
    assert "db3" not in fake.messages[first].content


def test_a_group_that_fires_again_after_resolving_gets_a_new_card(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> tuple[CardRecord, CardRecord]:
        await h.send(notification(alert("db1")))
        record = await h.record()
        record.acked_by, record.acked_at = "ou_alice", time.time()
        await h.cards.save(record)
        await h.send(notification(alert("db1", status="resolved")))
        resolved = await h.record()
        await h.send(notification(alert("db1")))
        return resolved, await h.record()

    resolved, again = run(fake, body)
    first, second = fake.sent(CHAT)
    assert resolved.message_id == first.message_id and resolved.acked_by == "ou_alice"
    assert again.message_id == second.message_id and again.state == FIRING
    assert again.acked_by == ""  # a new incident: nobody has acknowledged it yet
    assert first.body["header"]["template"] == "green"
    assert second.body["header"]["template"] == "orange"


def test_the_same_card_sent_twice_is_one_message(fake: FakeOpenAPI) -> None:
    body_ = notification(alert("db1"))

    async def body(h: Harness) -> list[Answer]:
        card = await h.card(body_, entry_id=41)
        first = await h.sink.send(card)
        await h.cards.save(CardRecord("chat", group_id(GROUP_KEY)))  # the registry forgot it
        return [first, await h.sink.send(card)]

    answers = run(fake, body)
    assert [a.outcome for a in answers] == [Outcome.DELIVERED, Outcome.DELIVERED]
    only_message(fake)
    assert fake.duplicates == 1


class FlakyCards(MemoryCards):
    """A registry whose next `failures` saves fail, as a storage outage would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def save(self, record: CardRecord) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageError("card registry outbox.db: disk I/O error")
        await super().save(record)


def test_a_registry_failure_after_the_send_is_retried_onto_the_same_message(
    fake: FakeOpenAPI,
) -> None:
    cards = FlakyCards(failures=1)

    async def body(h: Harness) -> tuple[Answer, Answer, CardRecord]:
        card = await h.card(notification(alert("db1")), entry_id=7)
        failed = await h.sink.send(card)
        retried = await h.sink.send(card)  # the worker's retry: the same entries
        return failed, retried, await h.record()

    failed, retried, record = run(fake, body, cards=cards)
    message = only_message(fake)
    assert (failed.outcome, failed.reason) == (Outcome.RETRY, Reason.STORAGE)
    assert message.message_id in failed.message and "disk I/O error" in failed.message
    assert retried.outcome is Outcome.DELIVERED
    assert record.message_id == message.message_id
    assert fake.duplicates == 1


def test_a_refused_update_is_answered_as_feishu_said_and_nothing_is_resent(
    fake: FakeOpenAPI,
) -> None:
    async def body(h: Harness) -> tuple[Answer, CardRecord]:
        await h.send(notification(alert("db1")))
        fake.fail_next(
            1, 400, 230020, "This operation triggers the frequency limit.", endpoint="update"
        )
        answer = await h.send(notification(alert("db1"), alert("db2")))
        return answer, await h.record()

    answer, record = run(fake, body)
    message = only_message(fake)
    assert (answer.outcome, answer.code) == (Outcome.RETRY, 230020)
    assert message.updates == [] and "db2" not in record.to_json()


def test_a_failed_reply_does_not_fail_the_update(
    fake: FakeOpenAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(h: Harness) -> Answer:
        await h.send(notification(alert("db1")))
        fake.fail_next(1, 500, None, endpoint="reply")
        return await h.send(notification(alert("db1", status="resolved")))

    with caplog.at_level(logging.WARNING, logger="amfeishu.delivery"):
        answer = run(fake, body)
    message = only_message(fake)
    assert answer.outcome is Outcome.DELIVERED
    assert message.body["header"]["template"] == "green" and message.replies == []
    assert "could not post the reply under the card" in caplog.text


def test_an_expired_token_midway_changes_nothing_visible(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> list[Answer]:
        first = await h.send(notification(alert("db1")))
        fake.expire_tokens()
        second = await h.send(notification(alert("db1"), alert("db2")))
        return [first, second]

    answers = run(fake, body)
    message = only_message(fake)
    assert [a.outcome for a in answers] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert len(message.updates) == 1
    assert [r.reason for r in fake.refused()] == ["bad_token"]
    assert fake.token_requests == 2


def test_without_update_in_place_every_card_is_a_new_message(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> None:
        await h.send(notification(alert("db1")))
        await h.send(notification(alert("db1"), alert("db2")))

    run(fake, body, update_in_place=False)
    assert len(fake.sent(CHAT)) == 2
    assert all(m.updates == [] for m in fake.sent(CHAT))


def test_a_card_without_its_group_is_refused_for_good(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> Answer:
        card = await h.card(notification(alert("db1")))
        card.group = None
        return await h.sink.send(card)

    answer = run(fake, body)
    assert (answer.outcome, answer.reason) == (Outcome.PERMANENT, Reason.BAD_CARD)
    assert fake.sent() == []


class ClickDuringUpdate(FeishuApp):
    """Someone acknowledges the card while Feishu is answering the update."""

    cards: CardRegistry

    async def update(self, message_id: str, card: Any) -> AppResult:
        record = await self.cards.get("chat", group_id(GROUP_KEY))
        assert record is not None
        record.acked_by, record.acked_at = "ou_alice", 1_700_000_000.0
        await self.cards.save(record)
        return await super().update(message_id, card)


def test_a_click_during_an_update_is_kept(fake: FakeOpenAPI) -> None:
    cards = MemoryCards()
    ClickDuringUpdate.cards = cards

    async def body(h: Harness) -> CardRecord:
        await h.send(notification(alert("db1")))
        await h.send(notification(alert("db1"), alert("db2")))
        return await h.record()

    record = run(fake, body, cards=cards, app_class=ClickDuringUpdate)
    assert record.acked_by == "ou_alice"  # not overwritten by the record read before the click
    assert "db2" in json.dumps(record.payload)


def test_email_receivers_and_mentions_reach_feishu(fake: FakeOpenAPI) -> None:
    async def body(h: Harness) -> None:
        await h.send(notification(alert("db1", "critical")))

    run(
        fake,
        body,
        chat_id=None,
        email="oncall@example.com",
        mentions={"critical": ["oncall@example.com"]},
    )
    (message,) = fake.sent()
    assert (message.receive_id_type, message.receive_id) == ("email", "oncall@example.com")
    assert "<at email=oncall@example.com></at>" in message.content
