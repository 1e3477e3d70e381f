"""The receiver's fast decoder (msgspec) means what the full parser means: it accepts the
same bodies into the same Notification, and leaves every other body to the full parser,
whose 400 names the field (amfeishu/models.py, amfeishu/receiver.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amfeishu.dedup import dedup_key
from amfeishu.edge import HTTPError, decode_json
from amfeishu.models import (
    PayloadError,
    decode_notification,
    decode_receipt,
    encode_notification,
    parse_notification,
    parse_stored,
)
from amfeishu.receiver import parse_body
from benchmarks.payloads import notification as bench_notification
from tests.conftest import ROOT

ALERT = b'{"status":"firing","labels":{"a":"b"}}'


def body(**fields: Any) -> bytes:
    return json.dumps({"alerts": [json.loads(ALERT)], **fields}).encode()


def old_answer(raw: bytes) -> str:
    """What the receiver answered before the fast path: the error, or 'ok'."""
    try:
        parse_notification(decode_json(raw))
    except (HTTPError, PayloadError) as exc:
        return str(exc)
    return "ok"


ACCEPTED = {
    "benchmark payload": json.dumps(bench_notification("g", 5)).encode(),
    "CJK and escapes": json.dumps(
        {"alerts": [{"status": "resolved", "labels": {"实例": "主机-1\n"}}]}, ensure_ascii=False
    ).encode(),
    "nulls for optional fields": body(
        receiver=None, groupKey=None, groupLabels=None, status=None, truncatedAlerts=None
    ),
    "optional alert fields null": (
        b'{"alerts":[{"status":"firing","labels":{},"annotations":null,"startsAt":null,'
        b'"endsAt":"","generatorURL":null,"fingerprint":null}]}'
    ),
    "empty status computed": body(status=""),
    "negative truncatedAlerts": body(truncatedAlerts=-3),
    "huge truncatedAlerts": b'{"alerts":[' + ALERT + b'],"truncatedAlerts":' + b"9" * 30 + b"}",
    "unknown keys and amfeishu extra": body(new={"x": [1, 2.5, None]}, amfeishu={"url": "u"}),
    "amfeishu not an object": body(amfeishu=[1]),
    "duplicate keys: the last wins": b'{"version":"3","alerts":[' + ALERT + b'],"version":"5"}',
    "nanoseconds and offsets": body(
        alerts=[{"status": "firing", "labels": {}, "startsAt": "2026-01-02T03:04:05.123456789Z"}],
        groupKey="{}:{}",
    ),
    "nesting under 1000 in an unknown key": b'{"alerts":['
    + ALERT
    + b'],"x":'
    + b"[" * 900
    + b"]" * 900
    + b"}",
    "whitespace around": b" \n" + body() + b"\n ",
}

# Bodies the fast path leaves to the full parser: refused (the answer names the field or
# the JSON problem), or accepted by it alone (json reads NaN; msgspec does not).
LEFT_TO_THE_FULL_PARSER = {
    "not an object": b"[1]",
    "alerts missing": b"{}",
    "alerts empty": b'{"alerts":[]}',
    "alerts not a list": b'{"alerts":{}}',
    "alert not an object": b'{"alerts":[1]}',
    "labels null": b'{"alerts":[{"status":"firing","labels":null}]}',
    "label not a string": b'{"alerts":[{"status":"firing","labels":{"a":1}}]}',
    "status wrong": b'{"alerts":[{"status":"bad","labels":{}}]}',
    "status missing": b'{"alerts":[{"labels":{}}]}',
    "time not RFC 3339": b'{"alerts":[{"status":"firing","labels":{},"startsAt":"yesterday"}]}',
    "endsAt not RFC 3339": b'{"alerts":[{"status":"firing","labels":{},"endsAt":"5"}]}',
    "truncatedAlerts a string": body(truncatedAlerts="3"),
    "truncatedAlerts a float": b'{"alerts":[' + ALERT + b'],"truncatedAlerts":3.0}',
    "truncatedAlerts a boolean": b'{"alerts":[' + ALERT + b'],"truncatedAlerts":true}',
    "version null": body(version=None),
    "top status wrong": body(status="open"),
    "commonLabels a list": body(commonLabels=[1]),
    "groupKey a number": body(groupKey=1),
    "invalid UTF-8 where msgspec skips": b'{"alerts":[' + ALERT + b'],"x":"\xff"}',
    "overlong UTF-8": b'{"alerts":[' + ALERT + b'],"x":"\xc0\xaf"}',
    "control character": b'{"alerts":[' + ALERT + b'],"x":"a\x01b"}',
    "trailing data": body() + b" x",
    "byte order mark": b"\xef\xbb\xbf" + body(),
    "nesting too deep": b'{"alerts":[' + ALERT + b'],"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "NaN in an unknown key": b'{"alerts":[' + ALERT + b'],"x":NaN}',
    "duplicate alerts key, the first empty": b'{"alerts":[],"alerts":[' + ALERT + b"]}",
    "not JSON": b"alertname=HighCPU",
}


@pytest.mark.parametrize("raw", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_bodies_decode_to_what_the_full_parser_builds(raw: bytes) -> None:
    fast = decode_notification(raw)
    assert fast is not None
    assert fast == parse_notification(json.loads(raw))
    assert parse_body(raw) == fast


GROUPLESS = b'{"alerts":[{"status":"resolved","labels":{"b":"2"}},' + ALERT + b"]}"


@pytest.mark.parametrize(
    "raw", [*ACCEPTED.values(), GROUPLESS], ids=[*ACCEPTED.keys(), "no groupKey, no groupLabels"]
)
def test_a_receipt_holds_what_the_notification_says(raw: bytes) -> None:
    """The receiver stores the body with a receipt's count and dedup key, not a parse."""
    receipt, parsed = decode_receipt(raw), decode_notification(raw)
    assert receipt is not None and parsed is not None
    assert (receipt.status, receipt.group_key) == (parsed.status, parsed.group_key)
    assert receipt.alerts == tuple((a.fingerprint, a.status, a.starts_at) for a in parsed.alerts)
    for target in ("ops", "实例"):
        assert dedup_key(target, receipt) == dedup_key(target, parsed)


@pytest.mark.parametrize("raw", LEFT_TO_THE_FULL_PARSER.values(), ids=LEFT_TO_THE_FULL_PARSER)
def test_other_bodies_get_the_full_parser_s_answer(raw: bytes) -> None:
    assert decode_notification(raw) is None
    assert decode_receipt(raw) is None
    expected = old_answer(raw)
    try:
        parse_body(raw)
    except HTTPError as exc:
        assert exc.status == 400
        assert exc.message == expected
    else:
        assert expected == "ok"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"alerts":{}}', "alerts: must be a list, got an object"),
        (b'{"alerts":[{"status":"firing","labels":{"a":1}}]}', "alerts[0].labels.a: must be"),
        (b'{"alerts":[' + ALERT + b'],"x":"\xff"}', "body is not UTF-8 (byte 56)"),
        (b"alertname=HighCPU", "body is not JSON"),
        (b'{"alerts":[' + ALERT + b'],"x":' + b"[" * 5000, "nests too deeply"),
    ],
)
def test_refusals_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(HTTPError) as info:
        parse_body(raw)
    assert info.value.status == 400
    assert message in info.value.message


@pytest.mark.parametrize("name", ["firing.json", "group-mixed.json", "resolved.json"])
def test_examples_decode_fast_and_round_trip_through_storage(name: str) -> None:
    raw = (ROOT / "examples" / name).read_bytes()
    parsed = decode_notification(raw)
    assert parsed is not None and parsed == parse_notification(json.loads(raw))
    assert parse_stored(encode_notification(parsed)) == parsed
    assert parse_stored(raw) == parsed


def test_stored_bodies_the_fast_path_refuses_still_parse_or_fail_as_value_errors() -> None:
    nan = b'{"alerts":[' + ALERT + b'],"x":NaN}'
    assert parse_stored(nan) == parse_notification(json.loads(nan))
    for garbage in (b"{", b"[1]", b'{"alerts":' + b"[" * 5000):
        with pytest.raises(ValueError):
            parse_stored(garbage)


def test_a_lone_surrogate_is_stored_escaped() -> None:
    raw = b'{"alerts":[{"status":"firing","labels":{"a":"\\ud800"},"fingerprint":"f"}]}'
    parsed = parse_stored(raw)
    assert parsed.alerts[0].labels == {"a": "\ud800"}
    stored = encode_notification(parsed)
    assert stored.isascii()
    assert parse_stored(stored) == parsed
