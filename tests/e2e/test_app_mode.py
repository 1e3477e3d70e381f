"""Feishu app mode with real processes: `amfeishu serve`, Debian's Alertmanager posting its
webhook into it, and the Feishu-like Open API server (real time, no fake clock). One card
per alert group, updated in place; clicks that acknowledge and silence; forgeries
refused; two replicas on Redis; a kill -9 between the send and the record.

The callback answer times of every click are written to test-artifacts/callback-times.txt.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import need_binary
from tests.support.alertmanager import Alertmanager, alert, resolved, webhook_config
from tests.support.callbacks import FakeAlertmanager, button, click, signed, url_verification
from tests.support.feishu_openapi_fake import MESSAGES_PATH, FakeOpenAPI, Message, _Handler
from tests.support.processes import ROOT, Amfeishu, free_port, wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

APP_ID, SECRET, CHAT = "cli_e2eapp0001", "e2e-app-secret-0001", "oc_oncall_e2e"
TOKEN, KEY = "e2e-verification-token", "e2e-encrypt-key"
BEARER = "e2e-bearer-token"
DEADLINE = 60.0  # group_wait/interval are 1 s; Alertmanager's retries back off
CLICK_TIMES: list[float] = []  # every click's answer time, for the figures


@pytest.fixture(scope="module", autouse=True)
def callback_figures() -> Iterator[None]:
    yield
    if not CLICK_TIMES:
        return
    times = sorted(CLICK_TIMES)
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    line = (
        f"callback answer times over {len(times)} clicks: p50 {p50 * 1000:.1f} ms,"
        f" p99 {p99 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
    )
    print("\n" + line)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "callback-times.txt").write_text(
        line + "\n" + "\n".join(f"{t * 1000:.1f}" for t in CLICK_TIMES) + "\n"
    )


@pytest.fixture
def feishu() -> Iterator[FakeOpenAPI]:
    with FakeOpenAPI() as server:  # its clock is time.monotonic: real time
        server.add_app(APP_ID, SECRET)
        yield server


@pytest.fixture
def am_binary() -> str:
    return need_binary("prometheus-alertmanager", "prometheus-alertmanager")


def app_config(feishu_url: str, alertmanager_url: str, **storage: str) -> dict[str, Any]:
    return {
        "auth": {"bearer_token": BEARER},
        "apps": {
            "oncall": {
                "app_id": APP_ID,
                "app_secret": SECRET,
                "domain": feishu_url,
                "verification_token": TOKEN,
                "encrypt_key": KEY,
            }
        },
        "alertmanager": {"url": alertmanager_url},
        "targets": {"chat": {"app": "oncall", "chat_id": CHAT, "language": "en"}},
        **({"storage": storage} if storage else {}),
    }


class Stack:
    """amfeishu → Feishu-like server; Alertmanager → amfeishu; clicks → amfeishu."""

    def __init__(self, server: Amfeishu, am: Alertmanager, feishu: FakeOpenAPI) -> None:
        self.server, self.am, self.feishu = server, am, feishu

    def card(self) -> Message:
        sent = self.feishu.sent(CHAT)
        assert len(sent) == 1, f"{len(sent)} messages in the chat"
        return sent[0]

    def wait_card(self, check: Callable[[Message], bool], what: str) -> Message:
        def ok() -> Message | None:
            sent = self.feishu.sent(CHAT)
            return sent[0] if len(sent) == 1 and check(sent[0]) else None

        found: Message = wait_until(ok, DEADLINE, what)
        settled(self.server)
        return found

    def silences(self) -> list[dict[str, Any]]:
        """Read back through Alertmanager's API v2."""
        listed: list[dict[str, Any]] = httpx.get(f"{self.am.url}/api/v2/silences", timeout=5).json()
        return listed


def settled(server: Amfeishu) -> None:
    """Nothing waits in the outbox: the card Feishu holds is in the card registry too."""
    wait_until(lambda: server.metric("amfeishu_outbox_depth") == 0, DEADLINE, "an empty outbox")


def post_click(url: str, raw: bytes, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{url}/feishu/callback/oncall", content=raw, headers=headers, timeout=10)
    took = time.monotonic() - started
    if response.status_code == 200 and "toast" in response.text:
        CLICK_TIMES.append(took)
    return response, took


def clicked(url: str, value: dict[str, Any], who: str = "ou_alice") -> dict[str, Any]:
    """A signed, encrypted click; the answer (a toast and the card), checked."""
    response, took = post_click(url, *signed(click(APP_ID, TOKEN, value, open_id=who), KEY))
    assert response.status_code == 200, response.text
    assert took < 3.0, f"answered after {took:.2f}s"
    answer: dict[str, Any] = response.json()
    assert set(answer["toast"]["i18n"]) == {"zh_cn", "en_us"}
    return answer


@pytest.fixture
def stack(
    tmp_path: Path,
    feishu: FakeOpenAPI,
    am_binary: str,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> Iterator[Stack]:
    am_port = free_port()
    server = serve(write_config(app_config(feishu.base_url, f"http://127.0.0.1:{am_port}")))
    hook = webhook_config(f"{server.url}/alerts/chat", BEARER, group_by=("alertname",))
    with Alertmanager(am_binary, hook, workdir=tmp_path, port=am_port) as am:
        yield Stack(server, am, feishu)


def stays(check: Callable[[], bool], seconds: float, what: str) -> None:
    """`check` holds for the whole window (polled): a negative can only be watched."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.1)  # polling interval of the watched window


def test_one_card_per_group_updated_in_place_through_a_token_expiry(stack: Stack) -> None:
    feishu, am = stack.feishu, stack.am
    alerts = [alert("DiskFull", labels={"instance": "db1"})]
    am.post(alerts)
    first = stack.wait_card(lambda m: "db1" in m.content, "the group's card")
    assert first.body["header"]["template"] == "red"

    alerts.append(alert("DiskFull", labels={"instance": "db2"}))
    am.post(alerts)
    stack.wait_card(lambda m: "db2" in m.content, "the card updated with db2")

    feishu.expire_tokens()  # the app's token dies in the middle of the incident
    alerts.append(alert("DiskFull", labels={"instance": "db3"}))
    am.post(alerts)
    stack.wait_card(lambda m: "db3" in m.content, "the card updated with db3")
    assert feishu.refused("bad_token"), "the expired token was used once, then renewed"
    assert stack.server.metric("amfeishu_token_refreshes_total", result="ok") == 2

    am.post(resolved(alerts))
    card = stack.wait_card(
        lambda m: m.body["header"]["template"] == "green" and len(m.replies) == 1,
        "the card green with one reply under it",
    )
    reply = json.loads(feishu.messages[card.replies[0]].content)["text"]
    assert reply == "✅ Resolved: DiskFull"
    assert card.message_id == first.message_id
    # Nothing else comes: a few more group intervals, still one message and one reply.
    settled = len(card.updates)
    stays(
        lambda: (
            len(feishu.sent(CHAT)) == 1 and len(card.replies) == 1 and len(card.updates) == settled
        ),
        4.0,
        "a second message, reply or update after the resolution",
    )
    calls = sum(1 for m in feishu.messages.values() if m.parent_id is None)
    print(
        f"\nfiring → resolved lifecycle: {calls} message, {len(card.updates)} updates,"
        f" {len(card.replies)} reply; token refused once and renewed"
    )
    assert stack.server.metric("amfeishu_card_updates_total", result="delivered") == len(
        card.updates
    )
    assert [r.reason for r in feishu.refused()] == ["bad_token"]


def test_ack_silence_and_unsilence_from_the_card(stack: Stack) -> None:
    feishu, am = stack.feishu, stack.am
    alerts = [alert("DiskFull", labels={"instance": f"db{i}"}) for i in (1, 2)]
    am.post(alerts)
    card = stack.wait_card(lambda m: "db1" in m.content and "db2" in m.content, "the card")

    answer = clicked(stack.server.url, button(card.body, "ack"), who="ou_alice")
    assert answer["toast"]["i18n"]["en_us"] == "Acknowledged"
    assert "Acknowledged by <at id=ou_alice></at>" in json.dumps(answer["card"])

    silence_1h = button(card.body, "silence", duration="1h")
    answer = clicked(stack.server.url, silence_1h, who="ou_bob")
    assert answer["toast"]["i18n"]["en_us"] == "Silenced for 1h"
    (silence,) = [s for s in stack.silences() if s["status"]["state"] == "active"]
    # the group's common labels (both alerts share alertname and severity), nothing broader
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {
        "alertname": "DiskFull",
        "severity": "critical",
    }
    assert silence["createdBy"] == "feishu:ou_bob"
    unsilence = button(answer["card"]["data"], "unsilence")
    assert unsilence["silence_id"] == silence["id"]

    # While it holds, Alertmanager sends nothing for the group: db3 arrives silenced.
    before = (card.content, len(card.updates))
    alerts.append(alert("DiskFull", labels={"instance": "db3"}))
    am.post(alerts)
    wait_until(
        lambda: any(
            a["labels"].get("instance") == "db3" and a["status"]["silencedBy"] == [silence["id"]]
            for a in am.alerts()
        ),
        DEADLINE,
        "db3 silenced in Alertmanager",
    )
    stays(
        lambda: (card.content, len(card.updates)) == before and len(feishu.sent(CHAT)) == 1,
        4.0,
        "the card changed while the group was silenced",
    )

    answer = clicked(stack.server.url, unsilence, who="ou_bob")
    assert answer["toast"]["i18n"]["en_us"] == "Silence expired"
    (expired,) = [s for s in stack.silences() if s["id"] == silence["id"]]
    assert expired["status"]["state"] == "expired"
    # Alertmanager notifies again; the update shows db3 and still who acknowledged.
    updated = stack.wait_card(lambda m: "db3" in m.content, "the card updated after unsilence")
    assert "Acknowledged by <at id=ou_alice></at>" in updated.content
    assert "Silenced until" not in updated.content
    assert len(feishu.sent(CHAT)) == 1
    for action in ("ack", "silence", "unsilence"):
        assert stack.server.metric("amfeishu_callbacks_total", action=action, result="done") == 1


def test_clicks_are_answered_well_within_three_seconds(stack: Stack) -> None:
    """The figures: 40 acknowledgements and 10 silence/unsilence pairs (real Alertmanager)."""
    stack.am.post([alert("DiskFull", labels={"instance": f"db{i}"}) for i in (1, 2)])
    card = stack.wait_card(lambda m: "db2" in m.content, "the card")
    ack, silence = button(card.body, "ack"), button(card.body, "silence", duration="1h")
    started = len(CLICK_TIMES)
    for i in range(40):
        clicked(stack.server.url, ack, who=f"ou_person{i}")
    for _ in range(10):
        answer = clicked(stack.server.url, silence)
        assert answer["toast"]["type"] == "success", answer
        answer = clicked(stack.server.url, button(answer["card"]["data"], "unsilence"))
        assert answer["toast"]["type"] == "success", answer
    times = sorted(CLICK_TIMES[started:])
    assert len(times) == 60
    assert times[-1] < 3.0
    assert [s["status"]["state"] for s in stack.silences()] == ["expired"] * 10


def forgeries() -> list[Any]:
    def c(value: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return click(APP_ID, TOKEN, value, **kw)

    return [
        pytest.param(lambda v: signed(c(v), KEY, sign_with="forged"), 401, id="forged signature"),
        pytest.param(
            lambda v: signed(click(APP_ID, "wrong", v), KEY), 401, id="wrong verification token"
        ),
        pytest.param(
            lambda v: signed(c(v), KEY, timestamp=time.time() - 600), 401, id="stale timestamp"
        ),
        pytest.param(lambda v: signed(click("cli_other", TOKEN, v), KEY), 401, id="wrong app id"),
        pytest.param(lambda v: signed(b'{"encrypt": ', KEY), 400, id="malformed JSON"),
        pytest.param(lambda v: signed(b"duration=1h", KEY), 400, id="not JSON"),
        pytest.param(lambda v: signed(c(v), None), 401, id="not encrypted, not signed"),
    ]


@pytest.mark.parametrize(("forge", "status"), forgeries())
def test_forged_clicks_are_refused_and_change_nothing(
    stack: Stack, forge: Callable[[dict[str, Any]], tuple[bytes, dict[str, str]]], status: int
) -> None:
    stack.am.post([alert("DiskFull", labels={"instance": "db1"})])
    card = stack.wait_card(lambda m: "db1" in m.content, "the card")
    silences = len(stack.silences())
    response, _ = post_click(stack.server.url, *forge(button(card.body, "silence", duration="1h")))
    assert response.status_code == status, response.text
    assert len(stack.silences()) == silences == 0
    assert stack.card().content == card.content and stack.card().updates == card.updates


def test_a_replayed_click_and_an_unknown_app_are_refused(stack: Stack) -> None:
    stack.am.post([alert("DiskFull", labels={"instance": "db1"})])
    card = stack.wait_card(lambda m: "db1" in m.content, "the card")
    raw, headers = signed(
        click(APP_ID, TOKEN, button(card.body, "silence", duration="4h"), event_id="ev-once"), KEY
    )
    first, _ = post_click(stack.server.url, raw, headers)
    assert first.status_code == 200 and first.json()["toast"]["type"] == "success"
    assert len(stack.silences()) == 1
    replayed, _ = post_click(stack.server.url, raw, headers)
    assert replayed.status_code == 401
    assert len(stack.silences()) == 1
    unknown = httpx.post(
        f"{stack.server.url}/feishu/callback/nope",
        content=signed(url_verification(TOKEN), KEY)[0],
        timeout=5,
    )
    assert unknown.status_code == 404
    assert len(stack.silences()) == 1
    verified, _ = post_click(stack.server.url, *signed(url_verification(TOKEN, "c-9"), KEY))
    assert verified.json() == {"challenge": "c-9"}


def notification(*instances: str, status: str = "firing") -> dict[str, Any]:
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "DiskFull", "instance": i, "severity": "critical"},
            "annotations": {"summary": f"disk full on {i}"},
            "startsAt": "2026-11-28T13:57:05Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": f"fp-{i}",
        }
        for i in instances
    ]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "status": status,
        "receiver": "feishu",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def deliver(server: Amfeishu, body: dict[str, Any]) -> None:
    response = server.post("/alerts/chat", body, headers={"Authorization": f"Bearer {BEARER}"})
    assert response.status_code == 200, response.text


def test_two_replicas_on_redis_share_the_card_and_the_clicks(
    tmp_path: Path,
    feishu: FakeOpenAPI,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    binary = need_binary("redis-server", "redis-server")
    with RedisServer(binary, tmp_path / "redis", appendonly=True) as redis_server:
        am = FakeAlertmanager().start()
        try:
            data = app_config(feishu.base_url, am.url)
            data["storage"] = {"redis_url": redis_server.url}
            config = write_config(data)
            one = serve(config)
            deliver(one, notification("db1"))
            wait_until(lambda: len(feishu.sent(CHAT)) == 1, DEADLINE, "the card sent by one")
            settled(one)
            card = feishu.sent(CHAT)[0]
            two = serve(config)
            assert one.stop() == 0  # the other replica carries on alone

            deliver(two, notification("db1", "db2"))
            wait_until(lambda: "db2" in card.content, DEADLINE, "the card updated by two")
            settled(two)
            assert len(feishu.sent(CHAT)) == 1
            answer = clicked(two.url, button(card.body, "ack"), who="ou_carol")
            assert "<at id=ou_carol></at>" in json.dumps(answer["card"])
            answer = clicked(two.url, button(card.body, "silence", duration="1h"))
            assert len(am.active()) == 1

            one = serve(config)  # back, and two leaves: one finds what two did
            assert two.stop() == 0
            deliver(one, notification("db1", "db2", "db3"))
            wait_until(lambda: "db3" in card.content, DEADLINE, "the card updated by one")
            settled(one)
            assert "Acknowledged by <at id=ou_carol></at>" in card.content
            assert "Silenced until" in card.content
            unsilence = button(card.body, "unsilence")
            clicked(one.url, unsilence)
            assert am.active() == []
            assert len(feishu.sent(CHAT)) == 1
        finally:
            am.stop()


class HoldingOpenAPI(FakeOpenAPI):
    """Posts a message, then holds the answer to the send until `release` (bounded)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()  # a message was posted, its answer is held
        self.release = threading.Event()

    def _handle(self, h: _Handler) -> None:
        if h.command != "POST" or h.path.partition("?")[0] != MESSAGES_PATH:
            return super()._handle(h)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        query = h.path.partition("?")[2]
        with self._lock:
            status, payload, headers = self._respond(
                ("send", None), h.headers.get("Authorization"), query, raw
            )
        if not self.release.is_set():
            self.holding.set()
            self.release.wait(30)  # the client dies meanwhile (kill -9)
        from tests.support.feishu_openapi_fake import _answer

        with contextlib.suppress(OSError):
            _answer(h, status, payload, headers)


def test_kill_9_between_the_send_and_its_record_still_gives_one_card(
    tmp_path: Path, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    # Deterministic: the fake posts the message, then holds its answer; amfeishu is killed
    # while it waits, so the message exists at Feishu and its id was never recorded.
    feishu = HoldingOpenAPI()
    with feishu:
        feishu.add_app(APP_ID, SECRET)
        config = write_config(app_config(feishu.base_url, "http://127.0.0.1:9"))
        server = serve(config)
        deliver(server, notification("db1"))
        assert feishu.holding.wait(DEADLINE), "the send never came"
        assert len(feishu.sent(CHAT)) == 1
        server.kill()  # kill -9 while the answer is held
        feishu.release.set()

        restarted = serve(config)
        wait_until(lambda: feishu.duplicates >= 1, DEADLINE, "the resend with the same uuid")
        wait_until(
            lambda: restarted.metric("amfeishu_outbox_depth") == 0, DEADLINE, "an empty outbox"
        )
        (card,) = feishu.sent(CHAT)
        deliver(restarted, notification("db1", "db2"))
        wait_until(lambda: "db2" in card.content, DEADLINE, "the same card updated")
        assert len(feishu.sent(CHAT)) == 1
        assert len(card.updates) == 1
