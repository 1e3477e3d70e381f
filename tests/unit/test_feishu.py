from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from amfeishu.feishu.answers import Answer, Outcome, classify
from amfeishu.feishu.webhook import (
    HOSTS,
    MAX_BODY_BYTES,
    FeishuClient,
    build_body,
    redact_url,
    sign,
)
from tests.support.feishu_fake import FakeFeishu

TEXT = {"msg_type": "text", "content": {"text": "[FIRING:1] HighCPU"}}
TOKEN = "f99fed8d-9b01-4dfe-a4f8-0123456789ab"
SECRET = "s3cr3t-value-xyz"


# feishu-api.md §1
@pytest.mark.parametrize(
    ("timestamp", "secret", "expected"),
    [
        (1599360473, "demo", "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="),
        (1599360473, "test-secret", "wSds2BzzFIIGf/WrhUO+NI1q/9j+FRJd3JNHKAq0NZY="),
        (1700000000, "SEC_example", "fjZmsYYkw7aI1xonMYBUHJs2vkBWQN7VVWKOQtsfeZU="),
        (1700000000, "密钥-秘密", "f6jxewsXDEm6yd+3BsZc4dYn+3Q6D65u/LQlZWwZpLE="),
    ],
)
def test_sign_matches_the_documented_vectors(timestamp: int, secret: str, expected: str) -> None:
    assert sign(timestamp, secret) == expected


def test_build_body_without_secret_has_no_timestamp_or_sign() -> None:
    body = build_body(TEXT, None, now=1599360473.9)
    assert json.loads(body) == TEXT
    assert build_body(TEXT, "", now=1599360473) == body


def test_build_body_with_secret_adds_string_timestamp_and_sign() -> None:
    data = json.loads(build_body(TEXT, "demo", now=1599360473.9))
    assert data["timestamp"] == "1599360473"  # a string of whole seconds
    assert data["sign"] == "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
    assert {k: v for k, v in data.items() if k not in ("timestamp", "sign")} == TEXT


def test_build_body_is_compact_utf8() -> None:
    body = build_body({"msg_type": "text", "content": {"text": "告警 a"}}, None)
    assert body == '{"msg_type":"text","content":{"text":"告警 a"}}'.encode()


def test_constants() -> None:
    assert MAX_BODY_BYTES == 20_000
    assert HOSTS == ("open.feishu.cn", "open.larksuite.com", "open.larkoffice.com")


def _j(code: int, msg: str = "") -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": {}}).encode()


SUCCESS = b'{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}'
OK, R, P = Outcome.DELIVERED, Outcome.RETRY, Outcome.PERMANENT
B, T, D = Outcome.BAD_CARD, Outcome.TOO_LARGE, None
LEGACY_SUCCESS = b'{"Extra":null,"StatusCode":0,"StatusMessage":"success"}'


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason", "code"),
    [
        (200, SUCCESS, OK, "ok", 0),
        (200, LEGACY_SUCCESS, OK, "ok", 0),
        (200, b'{"StatusCode":0}', OK, "ok", 0),
        (200, b'{"code":"0","msg":"success"}', OK, "ok", 0),
        (200, b'{"code":19021,"StatusCode":0}', P, "bad_signature", 19021),  # code wins
        (400, _j(9499, "too many request"), R, "rate_limited", 9499),
        (200, _j(9499, "Too Many Requests"), R, "rate_limited", 9499),
        (200, _j(9499, "Bad Request"), B, "bad_card", 9499),
        (400, _j(9499, "invalid param"), B, "bad_card", 9499),
        (200, _j(11232, "frequency limited psm[...]appID[1500]"), R, "rate_limited", 11232),
        (200, _j(11233, "create message chat trigger rate limit"), R, "rate_limited", 11233),
        (200, _j(11235, "only admin can mention @All"), B, "mention_all_forbidden", 11235),
        (200, _j(11310, "card content error"), B, "bad_card", 11310),
        (200, _j(19001, "incoming webhook access token invalid"), P, "bad_token", 19001),
        (200, _j(19002, "params error, msg_type need"), B, "bad_card", 19002),
        (200, _j(19021, "sign match fail"), P, "bad_signature", 19021),
        (200, _j(19022, "Ip Not Allowed"), P, "ip_not_allowed", 19022),
        (200, _j(19024, "Key Words Not Found"), P, "keyword_missing", 19024),
        (200, _j(19036, "The message exceeds the size limit of 30KB"), T, "too_large", 19036),
        (200, _j(99991400, "request trigger frequency limit"), R, "rate_limited", 99991400),
        (429, _j(99991400, "request trigger frequency limit"), R, "http_429", 99991400),
        # a code we do not know may be transient: retried until delivery.max_retry_age
        (200, _j(12345, "something new"), R, "unknown_code", 12345),
        (200, b'{"code":12345}', R, "unknown_code", 12345),
        (400, _j(12345, "something new"), R, "unknown_code", 12345),
        (503, _j(12345, "overloaded"), R, "http_5xx", 12345),
        (429, b"", R, "http_429", D),
        (500, b"Internal Server Error", R, "http_5xx", D),
        (502, b"<html>Bad Gateway</html>", R, "http_5xx", D),
        (504, b"", R, "http_5xx", D),
        (500, b'{"code":0}', R, "http_5xx", 0),  # code 0 on an error status is no success
        (413, b"<html>Request Entity Too Large</html>", T, "too_large", D),
        # answers we cannot read (a proxy's page, a captive portal) are retried, by reason
        (200, b"<html>ok?</html>", R, "not_json", D),
        (200, b"<!DOCTYPE html><html><body>Gateway login</body></html>", R, "not_json", D),
        (200, b"", R, "not_json", D),
        (200, b"[0]", R, "not_json", D),
        (200, b"\xff\xfe", R, "not_json", D),
        (400, b"Bad Request", R, "not_json", D),
        (400, b"<html><body>400 Bad Request</body></html>", R, "not_json", D),
        (404, b"404 page not found", R, "not_json", D),
        (404, b"<html><title>404 Not Found</title></html>", R, "not_json", D),
        (200, b'{"msg":"no code at all"}', R, "no_code", D),
        (200, b'{"foo":1}', R, "no_code", D),
        (200, b'{"code":null,"msg":"x"}', R, "no_code", D),
        (400, b'{"code":0}', R, "no_code", 0),
    ],
)
def test_classify(status: int, body: bytes, outcome: Outcome, reason: str, code: int) -> None:
    answer = classify(status, body)
    got = (answer.outcome, answer.reason, answer.code, answer.http_status)
    assert got == (outcome, reason, code, status)
    assert answer.message


def test_only_the_refusals_the_operator_must_fix_are_permanent() -> None:
    # feishu-api.md §3: every code it lists, and some it does not
    codes = [9499, 11232, 11233, 11235, 11310, 19001, 19002, 19021, 19022, 19024, 19036]
    codes += [99991400, 99991403, 1, 230025, 19003, 12345]
    permanent = {c for c in codes if classify(200, _j(c, "x")).outcome is P}
    assert permanent == {19001, 19021, 19022, 19024}


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (19001, ["webhook"]),
        (19021, ["secret", "clock", "1h"]),
        (19022, ["IP"]),
        (19024, ["keyword"]),
        (11235, ["mentions"]),
    ],
)
def test_refusals_the_operator_must_fix_say_how(code: int, words: list[str]) -> None:
    fix = classify(200, _j(code)).fix
    assert fix is not None
    assert all(w in fix for w in words), fix


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"x-ogw-ratelimit-reset": "3"}, 3.0),
        (429, {"Retry-After": "7"}, 7.0),
        (503, {"retry-after": "1.5"}, 1.5),
        (429, {"Retry-After": "soon"}, None),
        (200, {"Retry-After": "5"}, 5.0),  # an unreadable answer is retried, Retry-After kept
        (429, {}, None),
    ],
)
def test_classify_reads_retry_after(status: int, headers: dict[str, str], expected: float) -> None:
    answer = classify(status, b"", headers)
    assert answer.outcome is Outcome.RETRY
    assert answer.retry_after == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",
            "https://open.feishu.cn/open-apis/bot/v2/hook/<redacted>",
        ),
        (
            f"https://open.larksuite.com/open-apis/bot/v2/hook/{TOKEN}?x=1",
            "https://open.larksuite.com/open-apis/bot/v2/hook/<redacted>",
        ),
        (
            f"http://127.0.0.1:8080/open-apis/bot/v2/hook/{TOKEN}",
            "http://127.0.0.1:8080/open-apis/bot/v2/hook/<redacted>",
        ),
        (f"https://user:pw@example.com/hooks/{TOKEN}", "https://example.com/<redacted>"),
        ("not a url", "<redacted>"),
        ("http://[::1/x", "<redacted>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# ---- the client against the Feishu-like server ----------------------------------------------


def send(url: str, secret: str | None, message: dict = TEXT, timeout: float = 5.0) -> Answer:
    async def run() -> Answer:
        client = FeishuClient(timeout=timeout)
        try:
            return await client.send(url, secret, message)
        finally:
            await client.aclose()

    return asyncio.run(run())


def assert_no_secrets(answer: Answer) -> None:
    for text in (answer.message, str(answer), repr(answer), answer.fix or ""):
        assert TOKEN not in text
        assert SECRET not in text


def test_send_delivers_a_signed_message() -> None:
    with FakeFeishu() as fake:
        url = fake.add_bot(TOKEN, secret=SECRET)
        answer = send(url, SECRET)
        assert answer == Answer(Outcome.DELIVERED, 0, 200, "delivered", "ok")
        (got,) = fake.received
        assert got.body["msg_type"] == "text"
        assert isinstance(got.body["timestamp"], str)
        assert got.content_type == "application/json; charset=utf-8"


def test_send_with_the_wrong_secret_is_permanent_with_a_fix() -> None:
    with FakeFeishu() as fake:
        url = fake.add_bot(TOKEN, secret="the-right-one")
        answer = send(url, SECRET)
    assert (answer.outcome, answer.code, answer.reason) == (P, 19021, "bad_signature")
    assert answer.fix and "secret" in answer.fix
    assert_no_secrets(answer)


def test_send_to_an_unknown_token_is_permanent() -> None:
    with FakeFeishu() as fake:
        fake.add_bot("another-bot")
        answer = send(fake.url_for(TOKEN), None)
    assert (answer.outcome, answer.code, answer.reason) == (P, 19001, "bad_token")
    assert_no_secrets(answer)


def test_send_over_the_rate_limit_is_retried() -> None:
    with FakeFeishu() as fake:
        url = fake.add_bot(TOKEN, per_second=5, per_minute=5)

        async def run() -> list[Answer]:
            client = FeishuClient()
            try:
                return [await client.send(url, None, TEXT) for _ in range(6)]
            finally:
                await client.aclose()

        answers = asyncio.run(run())
    assert [a.outcome for a in answers] == [Outcome.DELIVERED] * 5 + [R]
    last = answers[-1]
    assert (last.code, last.http_status, last.reason) == (9499, 400, "rate_limited")


@pytest.mark.parametrize(
    ("fail", "outcome", "reason"),
    [
        ({"http_status": 500}, R, "http_5xx"),
        ({"http_status": 502, "code": None}, R, "http_5xx"),
        ({"http_status": 200, "code": 11232, "msg": "frequency limited"}, R, "rate_limited"),
        ({"http_status": 200, "code": 19036, "msg": "too big"}, T, "too_large"),
        ({"http_status": 200, "code": None}, R, "not_json"),
        ({"http_status": 200, "body": b"<html><body>Please log in</body></html>"}, R, "not_json"),
        ({"http_status": 404, "body": b"<html><h1>404 Not Found</h1></html>"}, R, "not_json"),
        ({"http_status": 200, "code": 12345, "msg": "new"}, R, "unknown_code"),
    ],
)
def test_send_classifies_server_failures(fail: dict, outcome: Outcome, reason: str) -> None:
    with FakeFeishu() as fake:
        url = fake.add_bot(TOKEN)
        fake.fail_next(1, **fail)
        first, second = send(url, None), send(url, None)
        assert (first.outcome, first.reason) == (outcome, reason)
        assert second.outcome is Outcome.DELIVERED
        assert fake.refusals[0].reason == "injected"


def test_send_when_the_server_drops_the_connection_is_retried() -> None:
    with FakeFeishu() as fake:
        url = fake.add_bot(TOKEN, secret=SECRET)
        fake.set_down(True, close=True)
        answer = send(url, SECRET)
    assert (answer.outcome, answer.reason, answer.http_status) == (R, "network", None)
    assert_no_secrets(answer)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_send_to_a_closed_port_is_retried_without_leaking_the_token() -> None:
    answer = send(f"http://127.0.0.1:{_closed_port()}/open-apis/bot/v2/hook/{TOKEN}", SECRET)
    got = (answer.outcome, answer.reason, answer.code, answer.http_status)
    assert got == (R, "network", None, None)
    assert_no_secrets(answer)


def test_send_timeout_is_retried() -> None:
    with FakeFeishu(delay=5.0) as fake:
        url = fake.add_bot(TOKEN, secret=SECRET)
        answer = send(url, SECRET, timeout=0.2)
    assert (answer.outcome, answer.reason, answer.http_status) == (R, "timeout", None)
    assert_no_secrets(answer)


def test_send_scrubs_urls_that_httpx_puts_in_errors() -> None:
    url = f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url} (secret {SECRET})", request=request)

    async def run() -> Answer:
        client = FeishuClient(transport=httpx.MockTransport(refuse))
        try:
            return await client.send(url, SECRET, TEXT)
        finally:
            await client.aclose()

    answer = asyncio.run(run())
    assert (answer.outcome, answer.reason) == (R, "network")
    assert "open.feishu.cn/open-apis/bot/v2/hook/<redacted>" in answer.message
    assert_no_secrets(answer)


def test_send_an_invalid_url_is_permanent() -> None:
    answer = send(f"ftp://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}", SECRET)
    assert (answer.outcome, answer.reason) == (P, "bad_url")
    assert_no_secrets(answer)
