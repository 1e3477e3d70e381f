"""The Feishu-like server behaves as feishu-api.md says Feishu does."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.feishu_fake import Bot, FakeFeishu, expected_sign

ROOT = Path(__file__).resolve().parents[2]
TEXT = {"msg_type": "text", "content": {"text": "[FIRING:1] HighCPU"}}

# feishu-api.md §6.7, verbatim
CARD_V2: dict[str, Any] = {
    "msg_type": "interactive",
    "card": {
        "schema": "2.0",
        "config": {"update_multi": True, "width_mode": "fill"},
        "header": {
            "title": {
                "tag": "plain_text",
                "content": "[FIRING:2] HighCPU",
                "i18n_content": {"en_us": "[FIRING:2] HighCPU"},
            },
            "subtitle": {"tag": "plain_text", "content": "prod / node-exporter"},
            "text_tag_list": [
                {
                    "tag": "text_tag",
                    "text": {"tag": "plain_text", "content": "critical"},
                    "color": "red",
                }
            ],
            "template": "red",
        },
        "body": {
            "elements": [
                {
                    "tag": "markdown",
                    "content": "**Summary**: CPU > 90% on node-1\n<at id=all></at>",
                },
                {
                    "tag": "column_set",
                    "flex_mode": "none",
                    "columns": [
                        {
                            "tag": "column",
                            "width": "weighted",
                            "weight": 1,
                            "elements": [
                                {"tag": "markdown", "content": "**Instance**\nnode-1:9100"}
                            ],
                        },
                        {
                            "tag": "column",
                            "width": "weighted",
                            "weight": 1,
                            "elements": [
                                {"tag": "markdown", "content": "**Started**\n2025-01-01 10:00:00"}
                            ],
                        },
                    ],
                },
                {"tag": "hr"},
                {
                    "tag": "button",
                    "text": {"tag": "plain_text", "content": "Open Alertmanager"},
                    "type": "primary",
                    "behaviors": [
                        {"type": "open_url", "default_url": "https://am.example.com/#/alerts"}
                    ],
                },
                {
                    "tag": "div",
                    "text": {
                        "tag": "plain_text",
                        "content": "sent by am-feishu",
                        "text_size": "notation",
                        "text_color": "grey",
                    },
                },
            ]
        },
    },
}
CARD_V1: dict[str, Any] = {
    "msg_type": "interactive",
    "card": {
        "config": {"wide_screen_mode": True},
        "header": {
            "title": {"tag": "plain_text", "content": "[RESOLVED] HighCPU"},
            "template": "green",
        },
        "elements": [
            {
                "tag": "div",
                "text": {"tag": "lark_md", "content": "**Summary**: CPU back to normal"},
                "fields": [
                    {
                        "is_short": True,
                        "text": {"tag": "lark_md", "content": "**Instance**\nnode-1"},
                    },
                    {"is_short": True, "text": {"tag": "lark_md", "content": "**Severity**\ncrit"}},
                ],
            },
            {"tag": "hr"},
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": "Silence"},
                        "type": "default",
                        "url": "https://am.example.com/#/silences/new",
                    }
                ],
            },
            {"tag": "note", "elements": [{"tag": "plain_text", "content": "sent by am-feishu"}]},
        ],
    },
}


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    with FakeFeishu() as server:
        yield server


def post(url: str, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    resp = httpx.post(url, content=content, headers={"Content-Type": "application/json"})
    return resp.status_code, resp.json()


def code_of(url: str, body: dict[str, Any] | bytes) -> int:
    return post(url, body)[1]["code"]


def signed(message: dict[str, Any], secret: str, ts: int | str | None = None) -> dict[str, Any]:
    ts = int(time.time()) if ts is None else ts
    return {**message, "timestamp": str(ts), "sign": expected_sign(int(ts), secret)}


def v2(*elements: dict[str, Any], **card: Any) -> dict[str, Any]:
    return {
        "msg_type": "interactive",
        "card": {"schema": "2.0", "body": {"elements": list(elements)}, **card},
    }


def test_the_fakes_sign_matches_the_documented_vector() -> None:
    assert expected_sign(1599360473, "demo") == "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="


def test_success_body_and_record(fake: FakeFeishu) -> None:
    url = fake.add_bot("tok")
    status, body = post(url, TEXT)
    assert (status, body) == (
        200,
        {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"},
    )
    assert fake.messages("tok") == [TEXT]
    assert fake.received[0].size == len(json.dumps(TEXT).encode())


def test_unknown_token(fake: FakeFeishu) -> None:
    status, body = post(fake.url_for("nope"), TEXT)
    assert (status, body["code"]) == (200, 19001)
    assert body["msg"] == "param invalid: incoming webhook access token invalid"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b: b, 0),
        (lambda b: {**b, "timestamp": int(b["timestamp"])}, 0),  # a number works too (go-lark)
        (lambda b: {**b, "sign": expected_sign(int(b["timestamp"]), "wrong")}, 19021),
        (lambda b: {k: v for k, v in b.items() if k != "sign"}, 19021),
        (lambda b: {k: v for k, v in b.items() if k != "timestamp"}, 19021),
        (lambda b: {**b, "timestamp": b["timestamp"] + "000"}, 19021),  # milliseconds
    ],
)
def test_signature(fake: FakeFeishu, mutate: Any, code: int) -> None:
    url = fake.add_bot("tok", secret="s3cret")
    assert code_of(url, mutate(signed(TEXT, "s3cret"))) == code


@pytest.mark.parametrize(("age", "code"), [(3500, 0), (-3500, 0), (3700, 19021), (-3700, 19021)])
def test_signature_timestamp_window(fake: FakeFeishu, age: int, code: int) -> None:
    url = fake.add_bot("tok", secret="s3cret")
    assert code_of(url, signed(TEXT, "s3cret", int(time.time()) - age)) == code


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"msg_type": "text", "content": {"text": "告警: disk full"}}, 0),
        ({"msg_type": "text", "content": {"text": "disk full"}}, 19024),
        (
            {
                "msg_type": "post",
                "content": {
                    "post": {
                        "zh_cn": {
                            "title": "disk",
                            "content": [[{"tag": "a", "text": "link", "href": "https://x/告警"}]],
                        }
                    }
                },
            },
            19024,  # a keyword only in href does not count
        ),
        (v2({"tag": "markdown", "content": "x"}, header={"title": {"content": "告警 A"}}), 0),
        (v2({"tag": "markdown", "content": "x"}, card_link={"url": "https://x/告警"}), 19024),
    ],
)
def test_keyword(fake: FakeFeishu, message: dict[str, Any], code: int) -> None:
    url = fake.add_bot("tok", keyword="告警")
    assert code_of(url, message) == code
    if code:
        assert fake.refusals[-1].reason == "keyword_missing"


def test_sixth_request_within_a_second_is_refused(fake: FakeFeishu) -> None:
    url = fake.add_bot("tok", per_second=5, per_minute=None)
    answers = [post(url, TEXT) for _ in range(6)]
    assert [a[1]["code"] for a in answers] == [0] * 5 + [9499]
    assert answers[-1] == (400, {"code": 9499, "msg": "too many request", "data": {}})
    assert len(fake.messages("tok")) == 5
    assert [r.reason for r in fake.refusals] == ["rate_limited"]


@pytest.mark.parametrize(
    ("per_second", "per_minute", "times", "admitted"),
    [
        (5, None, [0, 0.1, 0.2, 0.3, 0.4, 0.5], [True] * 5 + [False]),
        (5, None, [0, 0.1, 0.2, 0.3, 0.4, 1.01], [True] * 6),  # a sliding window
        (None, 3, [0, 10, 20, 59, 60.5], [True, True, True, False, True]),
        (5, 100, [i * 0.2 for i in range(101)], [True] * 100 + [False]),
    ],
)
def test_rate_windows(
    per_second: int | None, per_minute: int | None, times: list[float], admitted: list[bool]
) -> None:
    bot = Bot("tok", per_second=per_second, per_minute=per_minute)
    assert [bot.admit(1000 + t) for t in times] == admitted


@pytest.mark.parametrize(("size", "code"), [(20_480, 0), (20_481, 19036)])
def test_body_size_limit(fake: FakeFeishu, size: int, code: int) -> None:
    url = fake.add_bot("tok")
    empty = len(json.dumps({"msg_type": "text", "content": {"text": ""}}).encode())
    body = {"msg_type": "text", "content": {"text": "x" * (size - empty)}}
    assert len(json.dumps(body).encode()) == size
    assert code_of(url, body) == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", 19002),
        (b"[1]", 19002),
        ({"content": {"text": "x"}}, 19002),
        ({"msg_type": "interactive", "content": CARD_V2["card"]}, 19002),
        ({"msg_type": "text", "content": {}}, 19002),
        ({"msg_type": "post", "content": {"post": {"zh_cn": {"content": [[]]}}}}, 0),
    ],
)
def test_message_shape(fake: FakeFeishu, body: Any, code: int) -> None:
    assert code_of(fake.add_bot("tok"), body) == code


@pytest.mark.parametrize("message", [CARD_V2, CARD_V1], ids=["2.0", "1.0"])
def test_the_documented_example_cards_are_accepted(fake: FakeFeishu, message: dict) -> None:
    assert code_of(fake.add_bot("tok"), message) == 0


def _deep(levels: int) -> dict[str, Any]:
    el: dict[str, Any] = {"tag": "markdown", "content": "x"}
    for _ in range(levels):
        el = {"tag": "column_set", "columns": [{"tag": "column", "elements": [el]}]}
    return el


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    """CARD_V2 with the value at path set (a missing last key is added)."""
    message = copy.deepcopy(CARD_V2)
    node = message
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return message


BUTTON = ["card", "body", "elements", 3]


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        (_with(["card", "colour"], "red"), "unknown attribute 'colour'"),
        (_with(["card", "config", "wide_screen_mode"], True), "wide_screen_mode"),
        (_with(["card", "header", "template"], "gray"), "not a known colour"),
        (_with(["card", "header", "title", "font"], "big"), "unknown attribute 'font'"),
        (_with([*BUTTON, "url"], "https://x"), "unknown attribute 'url'"),
        (_with([*BUTTON, "value"], {"ack": 1}), "callback"),
        (_with([*BUTTON, "behaviors"], [{"type": "callback", "value": {}}]), "callback"),
        (_with([*BUTTON, "type"], "big"), "button type"),
        (v2({"tag": "note", "elements": []}), "'note' was removed"),
        (v2({"tag": "action", "actions": []}), "'action' was removed"),
        (v2({"tag": "markdown", "content": "x", "href": {}}), "unknown attribute 'href'"),
        (v2({"tag": "blink"}), "unknown tag 'blink'"),
        (v2(_deep(6)), "nested deeper than 5"),
        (v2(*[{"tag": "hr"}] * 201), "201 elements"),
        (
            {
                **CARD_V1,
                "card": {
                    **CARD_V1["card"],
                    "elements": [
                        {"tag": "action", "actions": [{"tag": "button", "value": {"k": 1}}]}
                    ],
                },
            },
            "callback",
        ),
    ],
)
def test_card_v2_rejections(fake: FakeFeishu, message: dict[str, Any], detail: str) -> None:
    status, body = post(fake.add_bot("tok"), message)
    assert (status, body) == (200, {"code": 9499, "msg": "Bad Request", "data": {}})
    assert detail in fake.refusals[-1].detail


@pytest.mark.parametrize(
    "message",
    [
        v2(_deep(5)),
        v2(*[{"tag": "hr"}] * 200),
        _with(["card", "header", "text_tag_list"], CARD_V2["card"]["header"]["text_tag_list"] * 5),
        {"msg_type": "interactive", "card": {"type": "template", "data": {"template_id": "AAq1"}}},
    ],
    ids=["nesting-5", "200-elements", "5-text-tags", "template"],
)
def test_card_v2_limits_that_pass(fake: FakeFeishu, message: dict[str, Any]) -> None:
    assert code_of(fake.add_bot("tok"), message) == 0


@pytest.mark.parametrize(
    "message",
    [
        {"msg_type": "text", "content": {"text": '<at user_id="all">所有人</at> down'}},
        {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"content": [[{"tag": "at", "user_id": "all"}]]}}},
        },
        CARD_V2,  # <at id=all></at> in markdown
    ],
)
def test_at_all_refused_when_the_group_forbids_it(fake: FakeFeishu, message: dict) -> None:
    assert code_of(fake.add_bot("strict", allow_at_all=False), message) == 11235
    assert code_of(fake.add_bot("lenient"), message) == 0


def test_fail_next_and_set_down(fake: FakeFeishu) -> None:
    url = fake.add_bot("tok")
    fake.fail_next(2, http_status=200, code=11232, msg="frequency limited")
    assert [code_of(url, TEXT) for _ in range(3)] == [11232, 11232, 0]
    fake.set_down(True)
    resp = httpx.post(url, json=TEXT)
    assert (resp.status_code, resp.text) == (503, "Service Unavailable")
    fake.set_down(False)
    assert code_of(url, TEXT) == 0
    assert [(r.code, r.http_status, r.reason) for r in fake.refusals] == [
        (11232, 200, "injected"),
        (11232, 200, "injected"),
        (None, 503, "down"),
    ]


def test_wait_for_wakes_on_delivery_and_explains_a_timeout(fake: FakeFeishu) -> None:
    url = fake.add_bot("tok")
    post(url, TEXT)
    assert fake.wait_count("tok", 1, timeout=5) == [TEXT]
    with pytest.raises(AssertionError, match=r"2 messages to bot 'tok'.*'received': \{'tok': 1\}"):
        fake.wait_count("tok", 2, timeout=0.05)


def test_runs_standalone() -> None:
    cmd = [sys.executable, "-m", "tests.support.feishu_fake", "--port", "0"]
    cmd += ["--bot", "a:sec", "--bot", "b", "--fast"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line
        base = line.split()[1]
        for _ in range(10):  # --fast: no rate limit
            assert code_of(f"{base}/open-apis/bot/v2/hook/b", TEXT) == 0
        assert code_of(f"{base}/open-apis/bot/v2/hook/a", TEXT) == 19021
        stats = httpx.get(f"{base}/_fake/stats").json()
        assert stats["received"] == {"b": 10}
        assert stats["refusals"] == {"bad_signature": 1}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_fail_for_a_while(fake: FakeFeishu) -> None:
    url = fake.add_bot("tok")
    fake.fail_for(60, http_status=502)
    assert [post_status(url) for _ in range(3)] == [502, 502, 502]
    fake.fail_for(0)
    assert post_status(url) == 200
    assert httpx.get(url).status_code == 404


def post_status(url: str) -> int:
    return httpx.post(url, json=TEXT).status_code
