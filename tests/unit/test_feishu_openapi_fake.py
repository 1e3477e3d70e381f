"""The Feishu-like Open API server keeps the rules the official pages state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.feishu_openapi_fake import (
    MAX_CARD_BYTES,
    MESSAGES_PATH,
    TOKEN_PATH,
    FakeClock,
    FakeOpenAPI,
)

APP, SECRET = "cli_fake0001", "fake-app-secret-0001"
CHAT = "oc_alerts"
CARD = {"schema": "2.0", "config": {"update_multi": True}, "body": {"elements": []}}
UNSHARED = {"schema": "2.0", "config": {"update_multi": False}, "body": {"elements": []}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeOpenAPI]:
    with FakeOpenAPI(clock=clock) as server:
        server.add_app(APP, SECRET)
        yield server


@pytest.fixture
def http(fake: FakeOpenAPI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url) as client:
        yield client


def token(http: httpx.Client, app: str = APP, secret: str = SECRET) -> dict[str, Any]:
    data: dict[str, Any] = http.post(TOKEN_PATH, json={"app_id": app, "app_secret": secret}).json()
    return data


def bearer(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(http)['tenant_access_token']}"}


def send(
    http: httpx.Client,
    body: dict[str, Any] | None = None,
    id_type: str = "chat_id",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    payload = body or {"receive_id": CHAT, "msg_type": "interactive", "content": json.dumps(CARD)}
    payload.update(fields)
    auth = bearer(http) if headers is None else headers
    return http.post(MESSAGES_PATH, params={"receive_id_type": id_type}, json=payload, headers=auth)


def patch(http: httpx.Client, message_id: str, card: Any = CARD, **headers: str) -> httpx.Response:
    content = json.dumps(card) if isinstance(card, dict) else card
    return http.patch(
        f"{MESSAGES_PATH}/{message_id}", json={"content": content}, headers=headers or bearer(http)
    )


def code(resp: httpx.Response) -> int:
    value: int = resp.json()["code"]
    return value


# ---- tenant_access_token ----------------------------------------------------------------------


def test_token_is_top_level_and_reused_while_more_than_30_minutes_remain(
    http: httpx.Client, fake: FakeOpenAPI, clock: FakeClock
) -> None:
    first = token(http)
    assert first["code"] == 0 and first["expire"] == 7200 and "data" not in first
    assert first["tenant_access_token"].startswith("t-")
    clock.advance(7200 - 1800)  # exactly 30 minutes left: still the same token
    again = token(http)
    assert again["tenant_access_token"] == first["tenant_access_token"]
    assert again["expire"] == 1800
    clock.advance(1)  # under 30 minutes: a new one, and the old one still works
    renewed = token(http)
    assert renewed["tenant_access_token"] != first["tenant_access_token"]
    assert renewed["expire"] == 7200
    old = {"Authorization": f"Bearer {first['tenant_access_token']}"}
    assert code(send(http, headers=old)) == 0
    clock.advance(1800)  # the old one's two hours are over
    assert code(send(http, headers=old)) == 99991663
    assert fake.token_requests == 3


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"app_id": APP, "app_secret": "wrong"}, 400, 10015),
        ({"app_id": "cli_unknown", "app_secret": SECRET}, 400, 10014),
        ({"app_id": APP}, 400, 10003),
        ([APP, SECRET], 400, 230001),
    ],
)
def test_token_refusals(http: httpx.Client, body: Any, status: int, expected: int) -> None:
    resp = http.post(TOKEN_PATH, json=body)
    assert (resp.status_code, code(resp)) == (status, expected)
    assert "tenant_access_token" not in resp.json()


def test_token_ttl_and_forced_expiry(clock: FakeClock) -> None:
    with FakeOpenAPI(clock=clock, token_ttl=60, renew_window=10) as fake:
        fake.add_app(APP, SECRET)
        with httpx.Client(base_url=fake.base_url) as http:
            first = token(http)
            assert first["expire"] == 60
            auth = {"Authorization": f"Bearer {first['tenant_access_token']}"}
            assert code(send(http, headers=auth)) == 0
            fake.expire_tokens(first["tenant_access_token"])
            assert code(send(http, headers=auth)) == 99991663
            assert token(http)["tenant_access_token"] != first["tenant_access_token"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 99991661),
        ({"Authorization": "t-abc"}, 99991661),
        ({"Authorization": "Bearer"}, 99991661),
        ({"Authorization": "Bearer abc"}, 99991671),
        ({"Authorization": "Bearer t-not-issued"}, 99991663),
    ],
)
def test_im_calls_need_a_live_bearer_token(
    http: httpx.Client, headers: dict[str, str], expected: int
) -> None:
    resp = send(http, headers=headers)
    assert (resp.status_code, code(resp)) == (400, expected)


# ---- send -------------------------------------------------------------------------------------


def test_send_answers_the_message_and_keeps_content_a_string(
    http: httpx.Client, fake: FakeOpenAPI
) -> None:
    resp = send(http, uuid="u-1")
    assert resp.status_code == 200 and code(resp) == 0
    data = resp.json()["data"]
    assert data["message_id"].startswith("om_") and data["chat_id"] == CHAT
    assert data["sender"] == {
        "id": APP,
        "id_type": "app_id",
        "sender_type": "app",
        "tenant_key": "fake",
    }
    assert resp.headers["X-Tt-Logid"]
    [message] = fake.sent(CHAT)
    assert message.content == json.dumps(CARD) and message.body == CARD
    assert message.uuid == "u-1" and message.app_id == APP


@pytest.mark.parametrize(
    ("id_type", "receive_id", "expected"),
    [
        ("chat_id", "oc_1", 0),
        ("open_id", "ou_1", 0),
        ("union_id", "on_1", 0),
        ("user_id", "a1b2", 0),
        ("email", "oncall@example.com", 0),
        ("chat_id", "ou_1", 230034),
        ("open_id", "oc_1", 230034),
        ("union_id", "ou_1", 230034),
        ("email", "oncall", 230034),
        ("user_id", "a b", 230034),
        ("chat_id", "", 230034),
        ("group_id", "oc_1", 230001),
        ("", "oc_1", 230001),
    ],
)
def test_send_checks_the_receiver(
    http: httpx.Client, id_type: str, receive_id: str, expected: int
) -> None:
    assert code(send(http, id_type=id_type, receive_id=receive_id)) == expected


def test_a_direct_message_goes_to_a_p2p_chat(http: httpx.Client, fake: FakeOpenAPI) -> None:
    data = send(http, id_type="email", receive_id="oncall@example.com").json()["data"]
    assert data["chat_id"].startswith("oc_p2p_")
    assert fake.sent()[0].receive_id == "oncall@example.com"


def test_send_to_a_chat_the_bot_is_not_in(clock: FakeClock) -> None:
    with FakeOpenAPI(clock=clock, chats={CHAT}) as fake:
        fake.add_app(APP, SECRET)
        with httpx.Client(base_url=fake.base_url) as http:
            assert code(send(http)) == 0
            assert code(send(http, receive_id="oc_other")) == 230002


@pytest.mark.parametrize(
    ("fields", "expected", "reason"),
    [
        ({"content": CARD}, 230001, "content_not_string"),  # an object, not a JSON string
        ({"content": None}, 230001, "content_not_string"),
        ({"msg_type": "card"}, 230001, "bad_request"),
        ({"msg_type": None}, 230001, "bad_request"),
        ({"content": "{not json"}, 230099, "bad_card"),
        ({"content": json.dumps({"hello": 1})}, 230099, "bad_card"),
        ({"content": json.dumps({"type": "template"})}, 230099, "bad_card"),
        ({"msg_type": "text", "content": json.dumps({"txt": "x"})}, 230001, "bad_content"),
        ({"msg_type": "text", "content": json.dumps({"text": "x" * 150_001})}, 230025, "too_large"),
        ({"uuid": "u" * 51}, 230001, "bad_request"),
        ({"reply_in_thread": True}, 0, ""),  # send ignores what it does not know
        ({"msg_type": "text", "content": json.dumps({"text": "hi"})}, 0, ""),
        ({"content": json.dumps({"type": "template", "data": {"template_id": "AA"}})}, 0, ""),
    ],
)
def test_send_checks_the_content(
    http: httpx.Client, fake: FakeOpenAPI, fields: dict[str, Any], expected: int, reason: str
) -> None:
    resp = send(http, **fields)
    assert code(resp) == expected, resp.json()
    if expected:
        assert resp.status_code == 400 and fake.refusals[-1].reason == reason
        assert fake.sent() == []


def _card_of(size: int) -> str:
    filler = "x" * (size - len(json.dumps({"schema": "2.0", "body": {"pad": ""}})))
    content = json.dumps({"schema": "2.0", "body": {"pad": filler}})
    assert len(content.encode()) == size
    return content


def test_a_card_over_30_kb_is_refused(http: httpx.Client, fake: FakeOpenAPI) -> None:
    assert code(send(http, content=_card_of(MAX_CARD_BYTES))) == 0
    resp = send(http, content=_card_of(MAX_CARD_BYTES + 1))
    assert (resp.status_code, code(resp)) == (400, 230025)
    assert len(fake.sent()) == 1


def test_uuid_gives_one_message_an_hour(
    http: httpx.Client, fake: FakeOpenAPI, clock: FakeClock
) -> None:
    first = send(http, uuid="g1-v1").json()["data"]["message_id"]
    assert send(http, uuid="g1-v1").json()["data"]["message_id"] == first
    assert send(http, uuid="g1-v2").json()["data"]["message_id"] != first
    clock.advance(3600)
    assert send(http, uuid="g1-v1").json()["data"]["message_id"] != first
    assert len(fake.sent()) == 3 and fake.duplicates == 1


# ---- rate limits ------------------------------------------------------------------------------


def test_five_per_second_per_chat(http: httpx.Client, fake: FakeOpenAPI, clock: FakeClock) -> None:
    auth = bearer(http)
    assert [code(send(http, headers=auth)) for _ in range(6)] == [0] * 5 + [230020]
    assert send(http, headers=auth).status_code == 400
    assert code(send(http, headers=auth, receive_id="oc_other")) == 0  # another chat
    clock.advance(0.5)
    assert code(send(http, headers=auth)) == 230020
    clock.advance(0.51)  # the first five are a second old
    assert code(send(http, headers=auth)) == 0
    assert len(fake.sent(CHAT)) == 6


def test_the_app_limits_answer_http_429(clock: FakeClock) -> None:
    with FakeOpenAPI(clock=clock, per_app_second=3, per_app_minute=5) as fake:
        fake.add_app(APP, SECRET)
        with httpx.Client(base_url=fake.base_url) as http:
            auth = bearer(http)
            chats = [f"oc_{i}" for i in range(10)]
            assert [code(send(http, headers=auth, receive_id=c)) for c in chats[:3]] == [0] * 3
            limited = send(http, headers=auth, receive_id=chats[3])
            assert (limited.status_code, code(limited)) == (429, 99991400)
            assert limited.headers["x-ogw-ratelimit-reset"] == "1"
            assert limited.headers["x-ogw-ratelimit-limit"] == "3"
            clock.advance(1)
            assert [code(send(http, headers=auth, receive_id=c)) for c in chats[3:6]] == [
                0,
                0,
                99991400,
            ]
            minute = send(http, headers=auth, receive_id=chats[6])
            assert int(minute.headers["x-ogw-ratelimit-reset"]) == 59  # the 1000/min window
            clock.advance(59)
            assert code(send(http, headers=auth, receive_id=chats[7])) == 0
            assert fake.token_requests == 1  # the token endpoint has no such limit here


def test_the_monthly_quota(clock: FakeClock) -> None:
    with FakeOpenAPI(clock=clock, monthly_quota=2) as fake:
        fake.add_app(APP, SECRET)
        with httpx.Client(base_url=fake.base_url) as http:
            auth = bearer(http)
            assert code(send(http, headers=auth, content=CARD)) == 230001  # a failure: free
            assert [code(send(http, headers=auth, receive_id=f"oc_{i}")) for i in range(2)] == [
                0,
                0,
            ]
            over = send(http, headers=auth, receive_id="oc_x")
            assert (over.status_code, code(over)) == (429, 99991403)
            assert token(http)["code"] == 0  # auth calls do not count


# ---- update (PATCH) ---------------------------------------------------------------------------


def test_patch_replaces_the_card_and_keeps_its_history(
    http: httpx.Client, fake: FakeOpenAPI
) -> None:
    message_id = send(http).json()["data"]["message_id"]
    resolved = {**CARD, "header": {"template": "green"}}
    resp = patch(http, message_id, resolved)
    assert (resp.status_code, resp.json()) == (200, {"code": 0, "msg": "success", "data": {}})
    message = fake.messages[message_id]
    assert message.body == resolved and message.updates == [json.dumps(resolved)]


@pytest.mark.parametrize(
    ("change", "card", "expected", "reason"),
    [
        ("", CARD, 0, ""),
        ("", UNSHARED, 230001, "not_shared"),
        ("unshared", CARD, 230001, "not_shared"),
        ("", CARD | {"config": {}}, 230001, "not_shared"),
        ("", json.dumps(CARD) + "}", 230099, "bad_card"),
        ("", CARD | {"body": {"pad": "x" * MAX_CARD_BYTES}}, 230025, "too_large"),
        ("", {"content": "object"}, 230099, "bad_card"),
        ("unknown", CARD, 230001, "no_message"),
        ("recalled", CARD, 230011, "recalled"),
        ("deleted", CARD, 230110, "deleted"),
        ("old", CARD, 230031, "too_old"),
        ("text", CARD, 230001, "not_card"),
        ("other_app", CARD, 230027, "other_sender"),
    ],
)
def test_patch_refusals(
    http: httpx.Client,
    fake: FakeOpenAPI,
    change: str,
    card: Any,
    expected: int,
    reason: str,
) -> None:
    fields: dict[str, Any] = {"content": json.dumps(UNSHARED if change == "unshared" else CARD)}
    if change == "text":
        fields = {"msg_type": "text", "content": json.dumps({"text": "hi"})}
    message_id = send(http, **fields).json()["data"]["message_id"]
    headers = bearer(http)
    if change == "unknown":
        message_id = "om_unknown"
    elif change == "recalled":
        fake.recall(message_id)
    elif change == "deleted":
        fake.delete(message_id)
    elif change == "old":
        fake.age(message_id, 14 * 86400 + 1)
    elif change == "other_app":
        fake.add_app("cli_other", "other-secret")
        other = token(http, "cli_other", "other-secret")["tenant_access_token"]
        headers = {"Authorization": f"Bearer {other}"}
    resp = patch(http, message_id, card, **headers)
    assert code(resp) == expected, resp.json()
    if expected:
        assert resp.status_code == 400 and fake.refusals[-1].reason == reason
        if message_id in fake.messages:
            assert fake.messages[message_id].updates == []


def test_patch_content_must_be_a_string(http: httpx.Client, fake: FakeOpenAPI) -> None:
    message_id = send(http).json()["data"]["message_id"]
    resp = http.patch(f"{MESSAGES_PATH}/{message_id}", json={"content": CARD}, headers=bearer(http))
    assert code(resp) == 230001 and fake.refusals[-1].reason == "content_not_string"


def test_a_card_updates_five_times_a_second(
    http: httpx.Client, fake: FakeOpenAPI, clock: FakeClock
) -> None:
    message_id = send(http).json()["data"]["message_id"]
    auth = bearer(http)
    assert [code(patch(http, message_id, **auth)) for _ in range(6)] == [0] * 5 + [230020]
    clock.advance(1)
    assert code(patch(http, message_id, **auth)) == 0
    assert len(fake.messages[message_id].updates) == 6


def test_a_card_older_than_14_days_is_still_updatable_before(
    http: httpx.Client, fake: FakeOpenAPI, clock: FakeClock
) -> None:
    message_id = send(http).json()["data"]["message_id"]
    clock.advance(14 * 86400)
    assert code(patch(http, message_id)) == 0
    clock.advance(1)
    assert code(patch(http, message_id)) == 230031


# ---- reply ------------------------------------------------------------------------------------


def test_reply_creates_a_child_in_the_same_chat(http: httpx.Client, fake: FakeOpenAPI) -> None:
    parent = send(http).json()["data"]["message_id"]
    body = {"msg_type": "text", "content": json.dumps({"text": "resolved"}), "uuid": "r-1"}
    resp = http.post(f"{MESSAGES_PATH}/{parent}/reply", json=body, headers=bearer(http))
    data = resp.json()["data"]
    assert code(resp) == 0 and data["parent_id"] == parent and data["chat_id"] == CHAT
    again = http.post(f"{MESSAGES_PATH}/{parent}/reply", json=body, headers=bearer(http))
    assert again.json()["data"]["message_id"] == data["message_id"]  # the uuid hour
    assert fake.messages[parent].replies == [data["message_id"]]
    assert fake.sent() == [fake.messages[parent]]  # replies are not top-level messages


@pytest.mark.parametrize(
    ("change", "body", "expected"),
    [
        ("recall", {}, 230011),
        ("delete", {}, 230110),
        ("unknown", {}, 230001),
        ("", {"content": {"text": "x"}}, 230001),
        ("", {"reply_in_thread": "yes"}, 230001),
    ],
)
def test_reply_refusals(
    http: httpx.Client, fake: FakeOpenAPI, change: str, body: dict[str, Any], expected: int
) -> None:
    parent = send(http).json()["data"]["message_id"]
    if change == "recall":
        fake.recall(parent)
    elif change == "delete":
        fake.delete(parent)
    target = "om_unknown" if change == "unknown" else parent
    payload = {"msg_type": "text", "content": json.dumps({"text": "x"})} | body
    resp = http.post(f"{MESSAGES_PATH}/{target}/reply", json=payload, headers=bearer(http))
    assert (resp.status_code, code(resp)) == (400, expected)
    assert fake.messages[parent].replies == []


def test_replies_share_the_chat_limit(http: httpx.Client, fake: FakeOpenAPI) -> None:
    parent = send(http).json()["data"]["message_id"]
    auth = bearer(http)
    body = {"msg_type": "text", "content": json.dumps({"text": "x"})}
    codes = [
        code(http.post(f"{MESSAGES_PATH}/{parent}/reply", json=body, headers=auth))
        for _ in range(5)
    ]
    assert codes == [0] * 4 + [230020]  # the send used one of the chat's five


# ---- injected failures and routing ------------------------------------------------------------


def test_fail_next_answers_5xx_then_recovers(http: httpx.Client, fake: FakeOpenAPI) -> None:
    auth = bearer(http)
    fake.fail_next(2, 502)
    fake.fail_next(1, 500, code=1500, msg="internal error")
    answers = [send(http, headers=auth) for _ in range(4)]
    assert [r.status_code for r in answers] == [502, 502, 500, 200]
    assert answers[0].text == "<html>injected failure</html>"
    assert code(answers[2]) == 1500 and code(answers[3]) == 0
    assert len(fake.sent()) == 1 and len(fake.refused("injected")) == 3


def test_fail_next_can_aim_at_one_endpoint(http: httpx.Client, fake: FakeOpenAPI) -> None:
    fake.fail_next(1, 503, endpoint="token")
    assert http.post(TOKEN_PATH, json={"app_id": APP, "app_secret": SECRET}).status_code == 503
    fake.fail_next(1, 500, endpoint="update")
    assert code(send(http)) == 0  # a send is not an update
    with pytest.raises(ValueError, match="endpoint must be one of"):
        fake.fail_next(1, endpoint="patch")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", MESSAGES_PATH),
        ("POST", "/open-apis/im/v1/chats"),
        ("PUT", f"{MESSAGES_PATH}/om_1"),
        ("POST", f"{MESSAGES_PATH}/om_1/forward"),
        ("GET", TOKEN_PATH),
    ],
)
def test_unknown_routes_are_404(http: httpx.Client, method: str, path: str) -> None:
    assert http.request(method, path).status_code == 404
