"""TargetWorker: one batch at a time, driven by hand with a fake sink and a fake clock."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from amfeishu import worker as worker_module
from amfeishu.backend.base import DEAD, DELIVERED, DUPLICATE, PENDING, Entry, NewEntry
from amfeishu.backend.memory import MemoryOutbox
from amfeishu.cards.plan import Card
from amfeishu.config.load import build_config
from amfeishu.config.types import Config, Target
from amfeishu.dedup import DedupWindow
from amfeishu.feishu.answers import Answer, Outcome, Reason
from amfeishu.feishu.webhook import body_size
from amfeishu.generation import Generation, renderer_for
from amfeishu.metrics import Metrics
from amfeishu.ratelimit import Limiter, Unlimited
from amfeishu.worker import BACKOFF_BASE, BACKOFF_CAP, Clock, Needs, RecentCard, TargetWorker
from tests.conftest import ROOT

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SHORT_TRACE = "4bf92f3577b3"  # what the card footer shows of TRACE

OK = Answer(Outcome.DELIVERED, 0, 200, "delivered", Reason.OK)
RETRY = Answer(
    Outcome.RETRY, 11232, 200, "feishu code 11232: frequency limited", Reason.RATE_LIMITED
)
BAD_TOKEN = Answer(
    Outcome.PERMANENT,
    19001,
    200,
    "feishu code 19001: param invalid: incoming webhook access token invalid",
    Reason.BAD_TOKEN,
    fix="check targets.<name>.webhook",
)
BAD_CARD = Answer(Outcome.BAD_CARD, 9499, 200, "feishu code 9499: Bad Request", Reason.BAD_CARD)
TOO_LARGE = Answer(Outcome.TOO_LARGE, 19036, 200, "feishu code 19036", Reason.TOO_LARGE)
SAFE_NOTICE_EN = "simplified card; the amfeishu log says why"
PODS = ("api-0", "api-1", "api-2")  # the three alerts of examples/group-firing.json


def example(name: str, group_key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((ROOT / "examples" / name).read_text())
    if group_key is not None:
        body["groupKey"] = group_key
    return body


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=30))


def generation(**overrides: Any) -> Generation:
    """A generation with target `ops` (a preview target: the fake sink sends its cards)."""
    data: dict[str, Any] = {"storage": {"path": ":memory:"}, "targets": {"ops": {}}}
    data.update(overrides)
    config = build_config(data, env={})
    return Generation(config, renderer_for(config))


class FakeClock:
    """Wall and monotonic time that move only when a test says so; jitter takes the ceiling."""

    def __init__(self) -> None:
        self.wall_now = time.time()  # MemoryOutbox stamps received_at with the real clock
        self.mono_now = 1000.0
        self.jitter_calls: list[tuple[float, float]] = []

    def jitter(self, lo: float, hi: float) -> float:
        self.jitter_calls.append((lo, hi))
        return hi

    def clock(self) -> Clock:
        return Clock(
            wall=lambda: self.wall_now, monotonic=lambda: self.mono_now, jitter=self.jitter
        )


class FakeSink:
    """Records every message; answers from a script (then OK), or by a rule on the message."""

    def __init__(
        self,
        answers: list[Answer] | None = None,
        rule: Callable[[dict[str, Any]], Answer] | None = None,
        on_send: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.limiter: Limiter = Unlimited()
        self.messages: list[dict[str, Any]] = []
        self.answers = list(answers or [])
        self.rule = rule
        self.on_send = on_send

    async def send(self, card: Card) -> Answer:
        message = card.message
        assert len(self.messages) < 100, "runaway sending"
        self.messages.append(copy.deepcopy(message))
        if self.on_send is not None:
            self.on_send(message)
        if self.rule is not None:
            return self.rule(message)
        return self.answers.pop(0) if self.answers else OK


class World:
    """A worker for target `ops` with a real MemoryOutbox, DedupWindow and Metrics."""

    def __init__(self, sink: FakeSink | None = None, current: Generation | None = None) -> None:
        self.sink = sink or FakeSink()
        self.current = current or generation()
        self.time = FakeClock()
        self.outbox = MemoryOutbox()
        self.dedup = DedupWindow(300, 1000)
        self.metrics = Metrics()
        self.sinks_for: list[Target] = []
        self.stop = False
        self.needs = Needs(
            outbox=self.outbox,
            dedup=self.dedup,
            metrics=self.metrics,
            generation=lambda: self.current,
            sink_for=self._sink_for,
            clock=self.time.clock(),
            stopping=lambda: self.stop,
        )
        self.worker = TargetWorker("ops", self.needs)

    def _sink_for(self, target: Target, config: Config) -> FakeSink:
        self.sinks_for.append(target)
        return self.sink

    async def put(self, payload: dict[str, Any], key: str = "k1", trace: str = TRACE) -> Entry:
        [entry] = await self.outbox.put([NewEntry("ops", payload, key, trace)])
        self.worker.add(entry)
        return entry

    async def state(self, entry: Entry) -> Entry:
        [stored] = await self.outbox.by_ids([entry.id])
        return stored

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"target": "ops", **labels})
        return 0.0 if value is None else value

    def outcome(self, outcome: str) -> float:
        return self.metric("amfeishu_notifications_total", outcome=outcome)


def text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def title(message: dict[str, Any]) -> str:
    return str(message["card"]["header"]["title"]["content"])


def pods_in(message: dict[str, Any]) -> set[str]:
    body = text(message)
    return {pod for pod in PODS if pod in body}


# ---- delivered --------------------------------------------------------------------


def test_a_delivered_card_finishes_the_entry_and_is_counted() -> None:
    async def scenario() -> None:
        world = World()
        entry = await world.put(example("firing.json"))
        assert world.metric("amfeishu_outbox_depth") == 1
        world.time.wall_now += 2.5  # latency: from receipt to the answer
        await world.worker.deliver_batch()

        [message] = world.sink.messages
        assert "HighCPU" in text(message)
        assert SHORT_TRACE in text(message)  # the footer names the request
        assert (await world.state(entry)).state == DELIVERED
        assert world.worker.queue == {}
        assert world.worker.failures == 0
        assert list(world.needs.recent) == [RecentCard("ops", world.time.wall_now, message, TRACE)]
        assert world.metric("amfeishu_cards_sent_total") == 1
        assert world.outcome("delivered") == 1
        assert world.outcome("failed") == 0
        assert world.metric("amfeishu_outbox_depth") == 0
        labels = {"result": "delivered", "code": "0", "reason": "ok"}
        assert world.metric("amfeishu_delivery_attempts_total", **labels) == 1
        assert world.metric("amfeishu_delivery_latency_seconds_count") == 1
        latency = world.time.wall_now - entry.received_at
        assert world.metric("amfeishu_delivery_latency_seconds_sum") == pytest.approx(latency)

        await world.worker.deliver_batch()  # nothing left: nothing sent again
        assert len(world.sink.messages) == 1

    run(scenario())


# ---- retry and backoff ----------------------------------------------------------------


def test_retry_keeps_the_entry_pending_with_exponential_backoff_up_to_the_cap() -> None:
    async def scenario() -> None:
        world = World(FakeSink([RETRY] * 7 + [OK]))
        entry = await world.put(example("firing.json"))
        clock = world.time
        for failures in range(1, 8):
            await world.worker.deliver_batch()
            ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1))
            assert world.worker.failures == failures
            assert clock.jitter_calls[-1] == (0.0, ceiling)  # full jitter: anywhere below
            assert world.worker.retry_at == clock.mono_now + ceiling
            assert (await world.state(entry)).state == PENDING
            assert entry.id in world.worker.queue
            clock.mono_now = world.worker.retry_at  # the worker would sleep until then
        assert [c[1] for c in clock.jitter_calls] == [1, 2, 4, 8, 16, 30, 30]
        assert world.outcome("failed") == 7
        assert world.outcome("delivered") == 0
        assert world.metric("amfeishu_cards_sent_total") == 0
        stored = await world.state(entry)
        assert stored.last_error == RETRY.message
        assert world.metric("amfeishu_outbox_depth") == 1

        await world.worker.deliver_batch()  # Feishu takes it now
        assert len(world.sink.messages) == 8
        assert world.worker.failures == 0
        assert (await world.state(entry)).state == DELIVERED
        assert world.worker.queue == {}
        assert world.outcome("delivered") == 1

    run(scenario())


def test_retry_counts_one_attempt_per_failed_send() -> None:
    async def scenario() -> None:
        world = World(FakeSink([RETRY, RETRY]))
        stored = await world.put(example("firing.json"))
        # What a backend reading rows back hands the worker: its own copy of the entry.
        queued = world.worker.queue.pop(stored.id).entry
        copy_entry = dataclasses.replace(queued)
        world.worker.add(copy_entry)
        await world.worker.deliver_batch()
        assert (await world.state(stored)).attempts == 1
        assert copy_entry.attempts == 1
        await world.worker.deliver_batch()
        assert (await world.state(stored)).attempts == 2
        assert copy_entry.attempts == 2

    run(scenario())


def test_retry_counts_one_attempt_per_failure_with_the_memory_outbox_entry() -> None:
    async def scenario() -> None:
        world = World(FakeSink([RETRY]))
        entry = await world.put(example("firing.json"))  # as the receiver submits it
        await world.worker.deliver_batch()
        assert (await world.state(entry)).attempts == 1

    run(scenario())


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (10.0, 10.0),  # the server's hint is a floor above the backoff (1s)
        (0.5, 1.0),  # below the backoff: the backoff wins
        (120.0, BACKOFF_CAP),  # even a server hint is capped
    ],
)
def test_a_server_retry_after_is_a_floor(retry_after: float, expected: float) -> None:
    async def scenario() -> None:
        answer = Answer(
            Outcome.RETRY, None, 429, "HTTP 429", Reason.HTTP_429, retry_after=retry_after
        )
        world = World(FakeSink([answer]))
        entry = await world.put(example("firing.json"))
        await world.worker.deliver_batch()
        assert world.worker.retry_at == world.time.mono_now + expected
        assert (await world.state(entry)).state == PENDING
        labels = {"result": "retry", "code": "", "reason": "http_429"}
        assert world.metric("amfeishu_delivery_attempts_total", **labels) == 1

    run(scenario())


def test_after_max_retry_age_a_failing_entry_goes_dead_and_its_dedup_key_is_forgotten() -> None:
    async def scenario() -> None:
        world = World(FakeSink([RETRY, RETRY]), generation(delivery={"max_retry_age": "60s"}))
        entry = await world.put(example("firing.json"), key="key-old")

        await world.worker.deliver_batch()  # young: it stays pending
        assert (await world.state(entry)).state == PENDING
        assert world.outcome("dead") == 0

        world.time.wall_now += 61
        world.time.mono_now = world.worker.retry_at
        await world.worker.deliver_batch()
        stored = await world.state(entry)
        assert stored.state == DEAD
        assert "gave up after 60s" in (stored.last_error or "")
        assert RETRY.message in (stored.last_error or "")
        assert world.worker.queue == {}
        assert world.outcome("dead") == 1
        assert world.outcome("failed") == 2
        assert world.metric("amfeishu_outbox_depth") == 0
        # the key was forgotten: a replay or a resend of the same notification gets through
        assert await world.dedup.first_time("key-old")

    run(scenario())


# ---- permanent ------------------------------------------------------------------------


def test_a_permanent_refusal_is_dead_at_once_and_not_retried() -> None:
    async def scenario() -> None:
        world = World(FakeSink([BAD_TOKEN]))
        entry = await world.put(example("firing.json"), key="key-token")
        await world.worker.deliver_batch()

        assert len(world.sink.messages) == 1
        stored = await world.state(entry)
        assert stored.state == DEAD
        assert stored.last_error == BAD_TOKEN.message
        assert world.worker.queue == {}
        assert world.worker.retry_at == 0.0  # no backoff: nothing to retry
        assert world.worker.failures == 0
        assert world.outcome("dead") == 1
        assert world.outcome("failed") == 0
        labels = {"result": "permanent", "code": "19001", "reason": "bad_token"}
        assert world.metric("amfeishu_delivery_attempts_total", **labels) == 1
        assert await world.dedup.first_time("key-token")

        await world.worker.deliver_batch()
        assert len(world.sink.messages) == 1  # never sent again

    run(scenario())


# ---- bad card, too large -----------------------------------------------------------------


def test_a_card_feishu_refuses_goes_once_more_as_the_safe_card() -> None:
    async def scenario() -> None:
        world = World(FakeSink([BAD_CARD, OK]), generation(templates={"language": "en"}))
        entry = await world.put(example("group-firing.json"))
        await world.worker.deliver_batch()

        first, second = world.sink.messages
        assert first != second
        assert '"tag": "hr"' in text(first)  # the template's card
        assert '"tag": "hr"' not in text(second)  # the card built in Python
        assert pods_in(second) == set(PODS)  # the same alerts
        footer = second["card"]["body"]["elements"][-1]["text"]["content"]
        assert footer.startswith("amfeishu · ops")
        assert SHORT_TRACE in footer
        assert (await world.state(entry)).state == DELIVERED
        assert world.worker.queue == {}
        assert world.outcome("delivered") == 1
        assert world.outcome("dead") == 0
        bad = {"result": "bad_card", "code": "9499", "reason": "bad_card"}
        assert world.metric("amfeishu_delivery_attempts_total", **bad) == 1
        assert world.metric("amfeishu_cards_sent_total") == 1

    run(scenario())


def test_the_safe_card_after_a_refusal_says_it_is_simplified() -> None:
    async def scenario() -> None:
        world = World(FakeSink([BAD_CARD, OK]), generation(templates={"language": "en"}))
        await world.put(example("group-firing.json"))
        await world.worker.deliver_batch()
        second = world.sink.messages[1]
        footer = second["card"]["body"]["elements"][-1]["text"]["content"]
        assert SAFE_NOTICE_EN in footer

    run(scenario())


def test_a_refused_safe_card_is_not_resent_again() -> None:
    async def scenario() -> None:
        world = World(FakeSink([BAD_CARD, BAD_CARD]))
        entry = await world.put(example("firing.json"), key="key-bad")
        await world.worker.deliver_batch()
        assert len(world.sink.messages) == 2  # template card, then safe card: no loop
        assert (await world.state(entry)).state == DEAD
        assert world.outcome("dead") == 1

    run(scenario())


def many(count: int) -> dict[str, Any]:
    """One notification of `count` alerts named Big-00, Big-01, …"""
    body = example("firing.json")
    template = body["alerts"][0]
    body["alerts"] = [
        {
            **template,
            "labels": {**template["labels"], "alertname": f"Big-{i:02d}"},
            "fingerprint": f"{i:016x}",
            "annotations": {"summary": "s", "description": "x" * 200},
        }
        for i in range(count)
    ]
    return body


def test_too_large_splits_until_every_alert_is_conveyed() -> None:
    limit = 3000  # this "Feishu" takes less than we measure (we plan up to MAX_BODY_BYTES)
    names = [f"Big-{i:02d}" for i in range(100)]

    def feishu(message: dict[str, Any]) -> Answer:
        return TOO_LARGE if body_size(message) > limit else OK

    def shown(message: dict[str, Any]) -> list[str]:
        return [name for name in names if name in text(message)]

    async def scenario() -> None:
        world = World(FakeSink(rule=feishu), generation(grouping={"max_alerts_per_card": 100}))
        entry = await world.put(many(100))
        await world.worker.deliver_batch()

        first, *accepted = world.sink.messages
        assert body_size(first) > limit and shown(first) == names  # one card, refused
        assert len(accepted) > 1
        assert all(body_size(m) <= limit for m in accepted)
        conveyed = [name for m in accepted for name in shown(m)]
        assert sorted(conveyed) == names  # every alert, each once
        assert world.metric("amfeishu_template_errors_total") == 0  # real cards, not safe ones
        assert (await world.state(entry)).state == DELIVERED
        assert world.worker.queue == {}
        assert world.metric("amfeishu_cards_sent_total") == len(accepted)
        assert world.outcome("delivered") == 1
        too_large = {"result": "too_large", "code": "19036", "reason": "too_large"}
        assert world.metric("amfeishu_delivery_attempts_total", **too_large) == 1

    run(scenario())


def test_one_alert_too_large_even_as_the_minimal_card_goes_dead() -> None:
    async def scenario() -> None:
        world = World(FakeSink(rule=lambda _: TOO_LARGE))
        entry = await world.put(example("firing.json"), key="key-large")
        await world.worker.deliver_batch()

        template_card, minimal = world.sink.messages  # then nothing left to shrink
        assert '"tag": "hr"' in text(template_card)
        assert '"tag": "hr"' not in text(minimal) and "HighCPU" in text(minimal)
        assert body_size(minimal) < body_size(template_card)
        stored = await world.state(entry)
        assert stored.state == DEAD
        assert stored.last_error == TOO_LARGE.message
        assert world.outcome("dead") == 1
        assert await world.dedup.first_time("key-large")

    run(scenario())


# ---- dedup, skipped ------------------------------------------------------------------------


def test_two_entries_with_one_dedup_key_make_one_card() -> None:
    async def scenario() -> None:
        world = World()
        first = await world.put(example("firing.json"), key="same")
        second = await world.put(example("firing.json"), key="same")
        await world.worker.deliver_batch()

        assert len(world.sink.messages) == 1
        assert (await world.state(first)).state == DELIVERED
        assert (await world.state(second)).state == DUPLICATE
        assert world.worker.queue == {}
        assert world.outcome("deduplicated") == 1
        assert world.outcome("delivered") == 1

    run(scenario())


def test_a_resolved_notification_for_a_target_without_send_resolved_is_skipped() -> None:
    async def scenario() -> None:
        world = World(current=generation(targets={"ops": {"send_resolved": False}}))
        entry = await world.put(example("resolved.json"))
        await world.worker.deliver_batch()

        assert world.sink.messages == []
        assert (await world.state(entry)).state == DELIVERED  # finished: nothing to send
        assert world.worker.queue == {}
        assert world.outcome("skipped") == 1
        assert world.outcome("delivered") == 0
        assert world.metric("amfeishu_cards_sent_total") == 0

    run(scenario())


# ---- reloads ---------------------------------------------------------------------------


def test_a_reload_in_the_middle_of_a_batch_does_not_reach_that_batch() -> None:
    a = generation(
        targets={"ops": {"language": "en", "keyword": "ALPHA"}},
        grouping={"max_alerts_per_card": 1},
    )
    b = generation(
        targets={"ops": {"language": "zh", "keyword": "BRAVO"}},
        grouping={"max_alerts_per_card": 30},
    )

    async def scenario() -> None:
        world = World(current=a)

        def reload(_: dict[str, Any]) -> None:
            world.current = b  # swapped while the first card of the batch is in flight

        world.sink.on_send = reload
        first = await world.put(example("group-firing.json"), key="first")
        await world.worker.deliver_batch()

        assert world.current is b  # the reload did happen, during the batch
        batch = world.sink.messages
        assert len(batch) == 3  # A: one alert per card
        assert [pods_in(m) for m in batch] == [{"api-0"}, {"api-1"}, {"api-2"}]
        for message in batch:
            assert title(message).startswith("ALPHA [FIRING:1]"), title(message)
            assert "BRAVO" not in text(message)
            assert "告警" not in text(message)
        assert [t.keyword for t in world.sinks_for] == ["ALPHA"]
        assert (await world.state(first)).state == DELIVERED

        world.sink.on_send = None
        world.sink.messages = []
        second = await world.put(example("group-firing.json", group_key="g2"), key="second")
        await world.worker.deliver_batch()
        [message] = world.sink.messages  # B: up to 30 alerts per card
        assert pods_in(message) == set(PODS)
        assert title(message).startswith("BRAVO [告警:3]"), title(message)
        assert "ALPHA" not in text(message)
        assert [t.keyword for t in world.sinks_for] == ["ALPHA", "BRAVO"]
        assert (await world.state(second)).state == DELIVERED

    run(scenario())


def test_a_target_removed_by_a_reload_keeps_its_entries_pending() -> None:
    async def scenario() -> None:
        world = World()
        with_ops = world.current
        world.current = generation(targets={"other": {}})
        entry = await world.put(example("firing.json"))
        await world.worker.deliver_batch()

        assert world.sink.messages == []
        assert world.sinks_for == []
        assert (await world.state(entry)).state == PENDING
        assert entry.id in world.worker.queue
        assert world.outcome("dead") == 0

        world.current = with_ops  # back again: the entry was kept and goes out
        await world.worker.deliver_batch()
        assert len(world.sink.messages) == 1
        assert (await world.state(entry)).state == DELIVERED

    run(scenario())


# ---- run() ---------------------------------------------------------------------------------


def test_run_delivers_and_ends_when_stopping() -> None:
    async def scenario() -> None:
        world = World()

        def stop(_: dict[str, Any]) -> None:
            world.stop = True

        world.sink.on_send = stop
        entry = await world.put(example("firing.json"))
        await asyncio.wait_for(world.worker.run(), timeout=10)
        assert len(world.sink.messages) == 1
        assert (await world.state(entry)).state == DELIVERED

    run(scenario())


def test_stop_ends_a_backoff_pause_at_once() -> None:
    async def scenario() -> None:
        world = World()
        entry = await world.put(example("firing.json"))
        world.worker.retry_at = world.time.mono_now + 3600  # backing off for an hour
        running = asyncio.create_task(world.worker.run())
        await world.put(example("firing.json"), key="another")  # arrivals do not end it
        await asyncio.sleep(0)
        assert not running.done()
        world.stop = True
        world.worker.stop()
        await asyncio.wait_for(running, timeout=10)
        assert world.sink.messages == []
        assert (await world.state(entry)).state == PENDING

    run(scenario())


def test_run_returns_when_its_target_is_gone() -> None:
    async def scenario() -> None:
        world = World(current=generation(targets={"other": {}}))
        entry = await world.put(example("firing.json"))
        await asyncio.wait_for(world.worker.run(), timeout=10)
        assert world.sink.messages == []
        assert (await world.state(entry)).state == PENDING

    run(scenario())


def test_a_bug_in_a_batch_does_not_kill_run(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        world = World()
        calls = []
        real = world.worker.deliver_batch

        async def flaky() -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("boom")
            world.stop = True
            await real()

        monkeypatch.setattr(world.worker, "deliver_batch", flaky)
        monkeypatch.setattr(worker_module, "BACKOFF_BASE", 0.001)  # the backoff really sleeps
        entry = await world.put(example("firing.json"))
        await asyncio.wait_for(world.worker.run(), timeout=10)
        assert len(calls) == 2
        assert (await world.state(entry)).state == DELIVERED

    run(scenario())
