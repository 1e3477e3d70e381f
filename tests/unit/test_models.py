from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from amfeishu.events import parse_event
from amfeishu.models import PayloadError, parse_notification, parse_time
from tests.conftest import ROOT


def sample(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "examples" / name).read_text())


def test_real_payloads_parse() -> None:
    n = parse_notification(sample("group-mixed.json"))
    assert n.status == "firing"
    assert len(n.firing) + len(n.resolved) == len(n.alerts)
    assert n.resolved and n.firing
    assert n.severity == "warning"
    assert parse_notification(n.to_dict()) == n


def test_severity_is_the_highest_firing_one() -> None:
    data = sample("group-firing.json")
    data["alerts"][1]["labels"]["severity"] = "critical"
    assert parse_notification(data).severity == "critical"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("alerts"), "alerts: is required"),
        (lambda d: d.update(alerts={}), "alerts: must be a list, got an object"),
        (lambda d: d.update(alerts=[]), "alerts: must not be empty"),
        (
            lambda d: d["alerts"][0].update(labels={"a": 1}),
            "alerts[0].labels.a: must be a string, got a number",
        ),
        (
            lambda d: d["alerts"][0].update(status="bad"),
            'alerts[0].status: must be "firing" or "resolved"',
        ),
        (
            lambda d: d["alerts"][0].update(startsAt="yesterday"),
            "alerts[0].startsAt: must be an RFC 3339 time",
        ),
        (
            lambda d: d["alerts"][0].pop("labels"),
            "alerts[0].labels: must be an object of strings, got null",
        ),
        (
            lambda d: d.update(truncatedAlerts="3"),
            "truncatedAlerts: must be a whole number, got a string",
        ),
        (
            lambda d: d.update(commonLabels=[1]),
            "commonLabels: must be an object of strings, got a list",
        ),
        (lambda d: d["alerts"].__setitem__(0, "x"), "alerts[0]: must be an object, got a string"),
    ],
)
def test_bad_payloads_name_the_field(mutate: Any, message: str) -> None:
    data = sample("firing.json")
    mutate(data)
    with pytest.raises(PayloadError) as info:
        parse_notification(data)
    assert str(info.value).startswith(message)


def test_not_an_object() -> None:
    with pytest.raises(PayloadError, match="body: must be a JSON object"):
        parse_notification([1, 2])


def test_times_with_nanoseconds_and_go_zero() -> None:
    assert parse_time("2026-11-28T13:46:21.618991123Z") == datetime(
        2026, 11, 28, 13, 46, 21, 618991, tzinfo=UTC
    )
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2026-11-28T21:46:21+08:00") == datetime(2026, 11, 28, 13, 46, 21, tzinfo=UTC)


def test_with_alerts_recomputes_common_labels_and_status() -> None:
    n = parse_notification(sample("group-mixed.json"))
    only_resolved = n.with_alerts(n.resolved)
    assert only_resolved.status == "resolved"
    assert only_resolved.common_labels["pod"] == n.resolved[0].labels["pod"]


def test_plain_event() -> None:
    n = parse_event(
        {
            "title": "backup failed",
            "text": "disk full",
            "severity": "critical",
            "labels": {"host": "db1"},
            "url": "https://ci.example/42",
        }
    )
    alert = n.alerts[0]
    assert alert.labels == {"host": "db1", "alertname": "backup failed", "severity": "critical"}
    assert alert.annotations["description"] == "disk full"
    assert alert.generator_url == "https://ci.example/42"
    assert n.severity == "critical"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "title: is required"),
        ({"title": "x", "severity": "fatal"}, "severity: must be one of critical, warning, info"),
        ({"title": "x", "url": "javascript:alert(1)"}, "url: must start with http"),
        ({"title": "x", "labels": {"a": 1}}, "labels: must be an object of strings"),
        ({"title": 5}, "title: must be a string"),
        ({"title": "x", "colour": "red"}, "colour: unknown field"),
    ],
)
def test_bad_events(event: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_event(event)


def test_long_event_text_is_trimmed_with_a_note() -> None:
    n = parse_event({"title": "log", "text": "x" * 20_000})
    assert "more characters trimmed" in n.alerts[0].annotations["description"]
