"""The app client against the Feishu-like Open API server: tokens, send, update, reply."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from amfeishu.feishu.answers import Outcome, Reason
from amfeishu.feishu.openapi import (
    QUOTA_EXHAUSTED,
    AppResult,
    FeishuApp,
    base_url,
    classify_app,
    content_string,
    validate_domain,
)
from tests.support.feishu_openapi_fake import MAX_CARD_BYTES, FakeClock, FakeOpenAPI
from tests.support.processes import free_port

APP, SECRET = "cli_app0001", "app-secret-do-not-leak-0001"
CHAT = "oc_alerts"
CARD: dict[str, Any] = {
    "schema": "2.0",
    "config": {"update_multi": True},
    "header": {"title": {"tag": "plain_text", "content": "[FIRING:1] HighCPU"}, "template": "red"},
    "body": {"elements": [{"tag": "markdown", "content": "CPU > 90%"}]},
}
RESOLVED = CARD | {"header": CARD["header"] | {"template": "green"}}
T = TypeVar("T")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeOpenAPI]:
    with FakeOpenAPI(clock=clock) as server:
        server.add_app(APP, SECRET)
        yield server


def using(
    fake: FakeOpenAPI,
    clock: FakeClock,
    body: Callable[[FeishuApp], Awaitable[T]],
    secret: str = SECRET,
    **options: Any,
) -> T:
    async def run() -> T:
        app = FeishuApp(APP, secret, fake.base_url, clock=clock, **options)
        try:
            return await body(app)
        finally:
            await app.aclose()

    return asyncio.run(run())


def _send(app: FeishuApp, chat: str = CHAT, uuid: str | None = None) -> Awaitable[AppResult]:
    return app.send("chat_id", chat, "interactive", CARD, uuid)


# ---- domains ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "url"),
    [
        ("feishu", "https://open.feishu.cn"),
        ("lark", "https://open.larksuite.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://feishu.internal.example/", "https://feishu.internal.example"),
        ("https://feishu.internal.example/open-apis", "https://feishu.internal.example"),
    ],
)
def test_base_url(domain: str, url: str) -> None:
    assert validate_domain(domain) is None
    assert base_url(domain) == url


@pytest.mark.parametrize(
    ("domain", "problem"),
    [
        ("Feishu", "must be 'feishu', 'lark' or an http(s)://host URL"),
        ("open.feishu.cn", "must be 'feishu', 'lark' or an http(s)://host URL"),
        ("ftp://open.feishu.cn", "must be 'feishu', 'lark' or an http(s)://host URL"),
        ("https://:443", "must be 'feishu', 'lark' or an http(s)://host URL"),
        ("https://host:99999", "must be 'feishu', 'lark' or an http(s)://host URL"),
        ("https://u:pass-word@host", "must not carry a user or password"),
        ("https://host/open-apis/im/v1", "must be the host alone, like https://open.feishu.cn"),
        ("https://host/?x=1", "must be the host alone, like https://open.feishu.cn"),
    ],
)
def test_bad_domains_are_named_without_echoing_them(domain: str, problem: str) -> None:
    assert validate_domain(domain) == problem
    with pytest.raises(ValueError, match="^domain " + re.escape(problem)) as info:
        FeishuApp(APP, SECRET, domain)
    assert "pass-word" not in str(info.value)


def test_content_is_a_compact_json_string() -> None:
    assert content_string({"text": "告警 a"}) == '{"text":"告警 a"}'


# ---- the tenant token -------------------------------------------------------------------------


def test_one_token_serves_many_sends_and_content_goes_as_a_string(
    fake: FakeOpenAPI, clock: FakeClock
) -> None:
    async def body(app: FeishuApp) -> list[AppResult]:
        return [await _send(app, f"oc_{i}") for i in range(8)]

    results = using(fake, clock, body)
    assert all(r.ok and r.answer.reason is Reason.OK for r in results)
    assert [r.message_id for r in results] == [m.message_id for m in fake.sent()]
    assert fake.token_requests == 1
    assert fake.sent()[0].content == content_string(CARD)  # the fake refuses an object


def test_the_token_is_renewed_five_minutes_before_it_expires(
    fake: FakeOpenAPI, clock: FakeClock
) -> None:
    seen: list[bool] = []

    async def body(app: FeishuApp) -> list[AppResult]:
        first = await _send(app, "oc_1")
        clock.advance(7200 - 301)  # 301 s left: still cached
        second = await _send(app, "oc_2")
        assert fake.token_requests == 1
        clock.advance(2)  # 299 s left: renewed, and Feishu hands out a new token
        third = await _send(app, "oc_3")
        assert app.token_fetches == 2 and app.token_failures == 0
        return [first, second, third]

    assert all(r.ok for r in using(fake, clock, body, on_token_fetch=seen.append))
    assert fake.token_requests == 2 and seen == [True, True]
    assert len({t for t in fake.tokens}) == 2
    assert not fake.refused()  # never a call with a token Feishu would refuse


def test_a_short_lived_token_is_renewed_halfway(clock: FakeClock) -> None:
    with FakeOpenAPI(clock=clock, token_ttl=120, renew_window=60) as fake:
        fake.add_app(APP, SECRET)

        async def body(app: FeishuApp) -> None:
            assert (await _send(app, "oc_1")).ok
            clock.advance(59)
            assert (await _send(app, "oc_2")).ok
            assert fake.token_requests == 1
            clock.advance(2)
            assert (await _send(app, "oc_3")).ok
            assert fake.token_requests == 2

        using(fake, clock, body)


def test_twenty_concurrent_sends_make_one_token_request(
    fake: FakeOpenAPI, clock: FakeClock
) -> None:
    async def body(app: FeishuApp) -> list[AppResult]:
        return await asyncio.gather(*(_send(app, f"oc_{i}") for i in range(20)))

    results = using(fake, clock, body)
    assert all(r.ok for r in results) and len(fake.sent()) == 20
    assert fake.token_requests == 1


def test_a_failed_token_fetch_is_shared_too(fake: FakeOpenAPI, clock: FakeClock) -> None:
    seen: list[bool] = []

    async def body(app: FeishuApp) -> list[AppResult]:
        return await asyncio.gather(*(_send(app, f"oc_{i}") for i in range(5)))

    results = using(fake, clock, body, secret="wrong-secret", on_token_fetch=seen.append)
    assert fake.token_requests == 1 and seen == [False]
    for r in results:
        assert (r.answer.outcome, r.answer.reason, r.answer.code) == (
            Outcome.PERMANENT,
            Reason.BAD_APP,
            10015,
        )
        assert r.answer.message.startswith("fetching the tenant token: feishu code 10015")
        assert r.answer.fix == "check the app's app_id and app_secret, and that the app is enabled"
    assert fake.sent() == []


def test_an_expired_token_is_renewed_and_the_call_retried_once(
    fake: FakeOpenAPI, clock: FakeClock
) -> None:
    async def body(app: FeishuApp) -> AppResult:
        assert (await _send(app, "oc_1", uuid="a")).ok
        fake.expire_tokens()
        return await _send(app, "oc_2", uuid="b")

    result = using(fake, clock, body)
    assert result.ok and result.message_id == fake.sent("oc_2")[0].message_id
    assert fake.token_requests == 2
    assert [r.code for r in fake.refused()] == [99991663]
    assert len(fake.sent()) == 2  # no duplicate


def test_concurrent_refusals_share_one_renewal(fake: FakeOpenAPI, clock: FakeClock) -> None:
    async def body(app: FeishuApp) -> list[AppResult]:
        assert (await _send(app, "oc_0")).ok
        fake.expire_tokens()
        return await asyncio.gather(*(_send(app, f"oc_{i}") for i in range(1, 11)))

    assert all(r.ok for r in using(fake, clock, body))
    assert fake.token_requests == 2 and len(fake.sent()) == 11


def test_a_token_refused_twice_is_permanent(fake: FakeOpenAPI, clock: FakeClock) -> None:
    fake.fail_next(2, 400, code=99991663, msg="Invalid access token", endpoint="send")

    result = using(fake, clock, lambda app: _send(app))
    assert (result.answer.outcome, result.answer.reason) == (Outcome.PERMANENT, Reason.BAD_APP)
    assert result.answer.message.endswith("(twice, with a fresh token)")
    assert fake.token_requests == 2 and fake.sent() == []


# ---- send, update, reply ----------------------------------------------------------------------


def test_a_resend_with_the_same_uuid_lands_on_the_same_message(
    fake: FakeOpenAPI, clock: FakeClock
) -> None:
    async def body(app: FeishuApp) -> list[AppResult]:
        return [await _send(app, uuid="grp-1-v1") for _ in range(2)]

    first, second = using(fake, clock, body)
    assert first.ok and second.ok and first.message_id == second.message_id
    assert len(fake.sent()) == 1 and fake.sent()[0].uuid == "grp-1-v1"


def test_update_then_reply(fake: FakeOpenAPI, clock: FakeClock) -> None:
    async def body(app: FeishuApp) -> tuple[AppResult, AppResult, AppResult]:
        sent = await _send(app)
        assert sent.message_id is not None
        updated = await app.update(sent.message_id, RESOLVED)
        text = {"text": "resolved"}
        replied = await app.reply(sent.message_id, "text", text, uuid="r-1")
        return sent, updated, replied

    sent, updated, replied = using(fake, clock, body)
    assert updated.ok and updated.message_id is None and not updated.gone
    assert replied.ok and replied.message_id
    card = fake.messages[sent.message_id or ""]
    assert card.body == RESOLVED and card.updates == [content_string(RESOLVED)]
    assert card.replies == [replied.message_id]
    reply = fake.messages[replied.message_id or ""]
    assert reply.parent_id == card.message_id and reply.body == {"text": "resolved"}
    assert fake.token_requests == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [("recall", 230011), ("delete", 230110), ("age", 230031), ("unshared", 230001)],
)
def test_a_card_that_cannot_be_updated_is_gone(
    fake: FakeOpenAPI, clock: FakeClock, change: str, code: int
) -> None:
    async def body(app: FeishuApp) -> AppResult:
        first = CARD | {"config": {}} if change == "unshared" else CARD
        sent = await app.send("chat_id", CHAT, "interactive", first)
        message_id = sent.message_id or ""
        if change == "recall":
            fake.recall(message_id)
        elif change == "delete":
            fake.delete(message_id)
        elif change == "age":
            fake.age(message_id, 15 * 86400)
        return await app.update(message_id, RESOLVED)

    result = using(fake, clock, body)
    assert result.gone and not result.ok
    assert (result.answer.outcome, result.answer.code) == (Outcome.PERMANENT, code)
    assert result.answer.fix and "can no longer be updated" in result.answer.fix


def test_a_reply_to_a_recalled_card_is_gone(fake: FakeOpenAPI, clock: FakeClock) -> None:
    async def body(app: FeishuApp) -> AppResult:
        sent = await _send(app)
        fake.recall(sent.message_id or "")
        return await app.reply(sent.message_id or "", "text", {"text": "resolved"})

    result = using(fake, clock, body)
    assert result.gone and result.answer.code == 230011


@pytest.mark.parametrize(
    ("call", "reason", "gone"),
    [
        (lambda app: app.update("om_1", CARD | {"config": {}}), Reason.BAD_CARD, False),
        (lambda app: app.update("om_1/../x", CARD), Reason.MESSAGE_GONE, True),
        (lambda app: app.reply("", "text", {"text": "x"}), Reason.MESSAGE_GONE, True),
        (lambda app: app.send("group_id", CHAT, "text", {"text": "x"}), Reason.BAD_URL, False),
        (
            lambda app: app.send("chat_id", CHAT, "text", {"text": "x"}, "u" * 51),
            Reason.BAD_CARD,
            False,
        ),
    ],
)
def test_bad_input_is_answered_without_a_request(
    fake: FakeOpenAPI,
    clock: FakeClock,
    call: Callable[[FeishuApp], Awaitable[AppResult]],
    reason: Reason,
    gone: bool,
) -> None:
    result = using(fake, clock, call)
    assert not result.ok and result.answer.reason is reason and result.gone is gone
    assert result.answer.code is None and fake.requests == 0


def test_a_card_over_30_kb_is_too_large_and_sent_once(fake: FakeOpenAPI, clock: FakeClock) -> None:
    big = CARD | {"body": {"elements": [{"tag": "markdown", "content": "x" * MAX_CARD_BYTES}]}}

    result = using(fake, clock, lambda app: app.send("chat_id", CHAT, "interactive", big))
    assert (result.answer.outcome, result.answer.code) == (Outcome.TOO_LARGE, 230025)
    assert fake.requests == 2  # the token, then one send: never again as it is


# ---- limits, quota, failures ------------------------------------------------------------------


def test_the_chat_limit_is_retried(fake: FakeOpenAPI, clock: FakeClock) -> None:
    async def body(app: FeishuApp) -> list[AppResult]:
        return [await _send(app) for _ in range(6)]

    results = using(fake, clock, body)
    assert [r.ok for r in results] == [True] * 5 + [False]
    last = results[-1].answer
    assert (last.outcome, last.reason, last.code) == (Outcome.RETRY, Reason.RATE_LIMITED, 230020)


def test_the_app_limit_is_retried_after_the_reset(clock: FakeClock) -> None:
    with FakeOpenAPI(clock=clock, per_app_second=2) as fake:
        fake.add_app(APP, SECRET)

        async def body(app: FeishuApp) -> list[AppResult]:
            return [await _send(app, f"oc_{i}") for i in range(3)]

        last = using(fake, clock, body)[-1].answer
        assert (last.outcome, last.reason, last.code) == (
            Outcome.RETRY,
            Reason.RATE_LIMITED,
            99991400,
        )
        assert last.http_status == 429 and last.retry_after == 1.0


def test_the_monthly_quota_is_retried_and_explained_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeOpenAPI(clock=clock, monthly_quota=1) as fake:
        fake.add_app(APP, SECRET)

        async def body(app: FeishuApp) -> list[AppResult]:
            return [await _send(app, f"oc_{i}") for i in range(4)]

        with caplog.at_level(logging.WARNING, logger="amfeishu.delivery"):
            results = using(fake, clock, body)
    assert results[0].ok
    for r in results[1:]:
        assert (r.answer.outcome, r.answer.code) == (Outcome.RETRY, QUOTA_EXHAUSTED)
        assert r.answer.fix and "monthly Open API quota" in r.answer.fix
    lines = [r.getMessage() for r in caplog.records if "99991403" in r.getMessage()]
    assert len(lines) == 1
    assert "10,000 calls a month" in lines[0] and "reset on the 1st" in lines[0]


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [(500, None, Reason.HTTP_5XX), (502, None, Reason.HTTP_5XX), (500, 1500, Reason.HTTP_5XX)],
)
def test_server_trouble_is_retried(
    fake: FakeOpenAPI, clock: FakeClock, status: int, code: int | None, reason: Reason
) -> None:
    fake.fail_next(1, status, code=code, endpoint="send")
    result = using(fake, clock, lambda app: _send(app))
    assert (result.answer.outcome, result.answer.reason) == (Outcome.RETRY, reason)
    assert fake.sent() == []


def test_a_token_endpoint_outage_is_retried(fake: FakeOpenAPI, clock: FakeClock) -> None:
    fake.fail_next(1, 503, endpoint="token")

    async def body(app: FeishuApp) -> list[AppResult]:
        return [await _send(app, "oc_1"), await _send(app, "oc_2")]

    failed, recovered = using(fake, clock, body)
    assert failed.answer.outcome is Outcome.RETRY and failed.answer.http_status == 503
    assert recovered.ok and fake.token_requests == 2


def test_an_unreachable_host_is_retried(clock: FakeClock) -> None:
    async def run() -> AppResult:
        app = FeishuApp(APP, SECRET, f"http://127.0.0.1:{free_port()}", clock=clock)
        try:
            return await _send(app)
        finally:
            await app.aclose()

    result = asyncio.run(run())
    assert (result.answer.outcome, result.answer.reason) == (Outcome.RETRY, Reason.NETWORK)
    assert result.answer.message.startswith("fetching the tenant token: network error")


def test_a_silent_host_times_out_and_is_retried(clock: FakeClock) -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        async def run() -> AppResult:
            app = FeishuApp(APP, SECRET, f"http://127.0.0.1:{port}", clock=clock, timeout=0.2)
            try:
                return await _send(app)
            finally:
                await app.aclose()

        result = asyncio.run(run())
    assert (result.answer.outcome, result.answer.reason) == (Outcome.RETRY, Reason.TIMEOUT)
    assert "timed out after 0.2s" in result.answer.message


def test_the_secret_and_tokens_never_show(
    fake: FakeOpenAPI, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[AppResult] = []

    async def body(app: FeishuApp) -> list[str]:
        answers.append(await _send(app, "oc_1"))
        token = next(iter(fake.tokens))
        echo = f"scope missing for app_secret={SECRET} token={token} and t-{'9' * 30}"
        fake.fail_next(1, 400, code=99991672, msg=echo, endpoint="send")
        answers.append(await _send(app, "oc_2"))
        fake.fail_next(1, 500, code=1500, msg=f"Bearer {token}", endpoint="update")
        answers.append(await app.update(answers[0].message_id or "", RESOLVED))
        fake.expire_tokens()
        answers.append(await _send(app, "oc_3"))
        return list(fake.tokens)

    with caplog.at_level(logging.DEBUG):
        tokens = using(fake, clock, body)
        answers.append(using(fake, clock, lambda app: _send(app), secret="wrong-" + SECRET))
    assert answers[1].answer.reason is Reason.BAD_APP and "<redacted>" in answers[1].answer.message
    assert answers[2].answer.outcome is Outcome.RETRY and answers[3].ok
    texts = [caplog.text] + [f"{a.answer.message} {a.answer.fix}" for a in answers]
    for text in texts:
        for needle in [SECRET, "t-" + "9" * 30, *tokens]:
            assert needle not in text


# ---- the classification itself ---------------------------------------------------------------


def _body(code: int, msg: str = "") -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": {}}).encode()


@pytest.mark.parametrize(
    ("kind", "status", "code", "msg", "outcome", "gone"),
    [
        ("send", 200, 0, "ok", Outcome.DELIVERED, False),
        ("send", 400, 230020, "", Outcome.RETRY, False),
        ("send", 400, 230049, "being sent", Outcome.RETRY, False),
        ("send", 429, 99991400, "", Outcome.RETRY, False),
        ("send", 429, 99991403, "", Outcome.RETRY, False),
        ("send", 400, 230002, "", Outcome.PERMANENT, False),
        ("send", 400, 230013, "", Outcome.PERMANENT, False),
        ("send", 400, 230034, "", Outcome.PERMANENT, False),
        ("send", 400, 99991672, "im:message", Outcome.PERMANENT, False),
        ("send", 400, 230001, "", Outcome.BAD_CARD, False),
        ("send", 400, 230099, "ErrCode: 200621", Outcome.BAD_CARD, False),
        ("send", 400, 230025, "", Outcome.TOO_LARGE, False),
        ("send", 400, 230011, "", Outcome.PERMANENT, False),
        ("update", 400, 230099, "ErrCode: 11310; card action is lock", Outcome.RETRY, False),
        ("update", 400, 230025, "", Outcome.TOO_LARGE, False),
        ("update", 400, 230011, "", Outcome.PERMANENT, True),
        ("update", 400, 230110, "", Outcome.PERMANENT, True),
        ("update", 400, 230031, "", Outcome.PERMANENT, True),
        ("update", 400, 230001, "", Outcome.PERMANENT, True),
        ("update", 400, 232009, "", Outcome.PERMANENT, False),
        ("reply", 400, 230011, "", Outcome.PERMANENT, True),
        ("reply", 400, 230031, "", Outcome.PERMANENT, False),
        ("token", 400, 10014, "", Outcome.PERMANENT, False),
        ("token", 400, 99991401, "", Outcome.PERMANENT, False),
    ],
)
def test_classify_app(
    kind: str, status: int, code: int, msg: str, outcome: Outcome, gone: bool
) -> None:
    answer, is_gone = classify_app(kind, status, _body(code, msg))
    assert (answer.outcome, answer.code, is_gone) == (outcome, code, gone)
