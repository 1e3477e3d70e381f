"""Log lines in the three formats, RFC 3339 times with their zone, and logfmt quoting."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo

import pytest

from amfeishu.logs import (
    JSONFormatter,
    LogfmtFormatter,
    TextFormatter,
    log_zone,
    logfmt_value,
    rfc3339,
    setup_logging,
)

CREATED = 1796200887.970  # 2026-12-02T08:41:27.970Z
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def record(
    message: str = "notification delivered",
    level: int = logging.INFO,
    request_id: str = "4bf92f3577b3",
    **fields: object,
) -> logging.LogRecord:
    rec = logging.LogRecord("amfeishu.delivery", level, __file__, 1, message, None, None)
    rec.created = CREATED
    rec.request_id = request_id  # what the handler's context filter sets
    for key, value in fields.items():
        setattr(rec, key, value)
    return rec


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (UTC, "2026-12-02T08:41:27.970Z"),
        (SHANGHAI, "2026-12-02T16:41:27.970+08:00"),
        (NEW_YORK, "2026-12-02T03:41:27.970-05:00"),
        (ZoneInfo("Europe/London"), "2026-12-02T08:41:27.970Z"),  # zero offset: Z, as Go writes
    ],
)
def test_rfc3339_with_the_zone(zone: tzinfo, expected: str) -> None:
    assert rfc3339(CREATED, zone) == expected


@pytest.fixture
def shanghai_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_local_time_follows_tz(shanghai_local_time: None) -> None:
    assert rfc3339(CREATED, None) == "2026-12-02T16:41:27.970+08:00"


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, UTC), ({"TZ": ""}, UTC), ({"TZ": "Asia/Shanghai"}, None), ({"TZ": "UTC"}, None)],
)
def test_utc_unless_tz_is_set(env: dict[str, str], expected: tzinfo | None) -> None:
    assert log_zone(env) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("delivered", "delivered"),
        (3, "3"),
        ("告警", "告警"),
        ("back\\slash", "back\\slash"),
        ("", '""'),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ('"', '"\\""'),
        ("C:\\ path", '"C:\\\\ path"'),
        ("line 1\nline 2", '"line 1\\nline 2"'),
        ("cr\rtab\t", '"cr\\rtab\\t"'),
        ("nul\x00bell\x07", '"nul\\u0000bell\\u0007"'),
    ],
)
def test_logfmt_quoting(value: object, expected: str) -> None:
    assert logfmt_value(value) == expected


@pytest.mark.parametrize(
    ("formatter", "rec", "expected"),
    [
        (
            LogfmtFormatter(),
            record(target="ops", outcome="delivered", alerts=2, attempts=1),
            "ts=2026-12-02T08:41:27.970Z level=info logger=amfeishu.delivery"
            ' msg="notification delivered" target=ops outcome=delivered alerts=2 attempts=1'
            " request_id=4bf92f3577b3",
        ),
        (
            LogfmtFormatter(zone=SHANGHAI),
            record("bad template", logging.WARNING, "-", target="db ops"),
            "ts=2026-12-02T16:41:27.970+08:00 level=warning logger=amfeishu.delivery"
            ' msg="bad template" target="db ops" request_id=-',
        ),
        (
            LogfmtFormatter(zone=NEW_YORK),
            record('card {"a": "b=c"}\nnext', logging.ERROR),
            "ts=2026-12-02T03:41:27.970-05:00 level=error logger=amfeishu.delivery"
            ' msg="card {\\"a\\": \\"b=c\\"}\\nnext" request_id=4bf92f3577b3',
        ),
        (
            TextFormatter(),
            record(target="ops", outcome="delivered"),
            "2026-12-02T08:41:27.970Z INFO    amfeishu.delivery [4bf92f3577b3]"
            " notification delivered target=ops outcome=delivered",
        ),
        (
            TextFormatter(zone=SHANGHAI),
            record("starting", request_id="-"),
            "2026-12-02T16:41:27.970+08:00 INFO    amfeishu.delivery [-] starting",
        ),
    ],
)
def test_lines(formatter: logging.Formatter, rec: logging.LogRecord, expected: str) -> None:
    assert formatter.format(rec) == expected


@pytest.mark.parametrize(
    ("zone", "time_text"),
    [(UTC, "2026-12-02T08:41:27.970Z"), (SHANGHAI, "2026-12-02T16:41:27.970+08:00")],
)
def test_json_lines(zone: tzinfo, time_text: str) -> None:
    line = JSONFormatter(zone=zone).format(record(target="ops", outcome="delivered", alerts=2))
    assert json.loads(line) == {
        "time": time_text,
        "level": "info",
        "logger": "amfeishu.delivery",
        "request_id": "4bf92f3577b3",
        "message": "notification delivered",
        "target": "ops",
        "outcome": "delivered",
        "alerts": 2,
    }


def _raised() -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("send failed", logging.ERROR)
        rec.exc_info = sys.exc_info()
    return rec


def test_a_traceback_stays_on_the_logfmt_line() -> None:
    line = LogfmtFormatter().format(_raised())
    assert "\n" not in line
    assert line.startswith("ts=2026-12-02T08:41:27.970Z level=error logger=amfeishu.delivery msg=")
    assert ' exc="Traceback (most recent call last):\\n' in line
    assert line.endswith('ValueError: boom"')
    assert json.loads(JSONFormatter().format(_raised()))["exception"].endswith("ValueError: boom")


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("level", "fmt", "level_number", "formatter"),
    [
        ("warn", "logfmt", logging.WARNING, LogfmtFormatter),
        ("debug", "json", logging.DEBUG, JSONFormatter),
        ("error", "text", logging.ERROR, TextFormatter),
    ],
)
def test_setup_logging_takes_the_flags_values(
    root_logging: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    level: str,
    fmt: str,
    level_number: int,
    formatter: type[logging.Formatter],
) -> None:
    monkeypatch.delenv("TZ", raising=False)
    setup_logging(level, fmt)
    [handler] = root_logging.handlers
    assert root_logging.level == level_number
    assert type(handler.formatter) is formatter
    assert handler.formatter.formatTime(record()) == "2026-12-02T08:41:27.970Z"
