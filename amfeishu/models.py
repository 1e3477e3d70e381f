"""Alertmanager webhook v4 payloads as typed objects.

Parsing is strict about types (a wrong type is a 400 naming the field) and
lenient about what Alertmanager may add later (unknown keys are ignored).

Two parsers, one meaning: `decode_notification` (msgspec, https://jcristharif.com/msgspec/,
straight from the received bytes) is the fast path; it accepts only what
`parse_notification` accepts, and answers None for anything else, so that
`parse_notification` decides, and names the field when it refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

SEVERITY_ORDER = ("critical", "warning", "info")
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
# RFC 3339 as Go prints it: optional fraction of up to 9 digits, Z or offset.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


class PayloadError(ValueError):
    """The body is not a valid payload; the message names the field."""


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def starts(self) -> datetime | None:
        return parse_time(self.starts_at)

    @property
    def ends(self) -> datetime | None:
        return parse_time(self.ends_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Notification:
    """One webhook body, or the part of it that goes to one target."""

    status: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    alerts: tuple[Alert, ...]
    truncated_alerts: int = 0
    version: str = "4"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. plain-event url

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.firing]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if not a.firing]

    @property
    def severity(self) -> str:
        """Highest severity among firing alerts; '' when none is known."""
        present = {a.severity.lower() for a in self.firing}
        return next((s for s in SEVERITY_ORDER if s in present), "")

    def with_alerts(self, alerts: list[Alert] | tuple[Alert, ...]) -> Notification:
        """The same notification restricted to some alerts (routing, size guard)."""
        alerts = tuple(alerts)
        status = "firing" if any(a.firing for a in alerts) else "resolved"
        return replace(
            self,
            alerts=alerts,
            status=status,
            common_labels=_common(a.labels for a in alerts),
            common_annotations=_common(a.annotations for a in alerts),
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": self.version,
            "groupKey": self.group_key,
            "truncatedAlerts": self.truncated_alerts,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": dict(self.group_labels),
            "commonLabels": dict(self.common_labels),
            "commonAnnotations": dict(self.common_annotations),
            "externalURL": self.external_url,
            "alerts": [a.to_dict() for a in self.alerts],
        }
        if self.extra:
            body["amfeishu"] = dict(self.extra)
        return body


def _common(maps: Any) -> dict[str, str]:
    maps = list(maps)
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def parse_time(value: str) -> datetime | None:
    """RFC 3339 (nanoseconds allowed) → aware datetime; None for Go's zero time or ''."""
    m = _RFC3339.match(value or "")
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    except ValueError:
        return None
    if zone in ("Z", "z"):
        dt = dt.replace(tzinfo=UTC)
    else:
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        dt = datetime.fromtimestamp(dt.replace(tzinfo=UTC).timestamp() - offset, UTC)
    return None if dt <= _ZERO_TIME else dt


def _expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise PayloadError(f"{path}: must be {what}, got {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _string_map(value: Any, path: str, *, required: bool = False) -> dict[str, str]:
    if value is None and not required:
        return {}
    _expect(value, dict, path, "an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{path}.{key}: must be a string, got {_type_name(item)}")
    return dict(value)


def _string(data: dict[str, Any], key: str, path: str, *, required: bool = False) -> str:
    if key not in data or data[key] is None:
        if required:
            raise PayloadError(f"{path}{key}: is required")
        return ""
    value: str = _expect(data[key], str, f"{path}{key}", "a string")
    return value


def _status(data: dict[str, Any], path: str) -> str:
    status = _string(data, "status", path, required=True)
    if status not in ("firing", "resolved"):
        raise PayloadError(f'{path}status: must be "firing" or "resolved", got {status!r:.40}')
    return status


def parse_alert(data: Any, path: str) -> Alert:
    _expect(data, dict, path, "an object")
    prefix = f"{path}."
    labels = _string_map(data.get("labels"), f"{path}.labels", required=True)
    for stamp in ("startsAt", "endsAt"):
        raw = _string(data, stamp, prefix)
        if raw and not _RFC3339.match(raw):
            raise PayloadError(f"{prefix}{stamp}: must be an RFC 3339 time, got {raw!r:.40}")
    return Alert(
        status=_status(data, prefix),
        labels=labels,
        annotations=_string_map(data.get("annotations"), f"{path}.annotations"),
        starts_at=_string(data, "startsAt", prefix),
        ends_at=_string(data, "endsAt", prefix),
        generator_url=_string(data, "generatorURL", prefix),
        fingerprint=_string(data, "fingerprint", prefix) or _fingerprint(labels),
    )


def _fingerprint(labels: dict[str, str]) -> str:
    """Stand-in for Alertmanager's fingerprint when a sender omits it."""
    import hashlib

    text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_notification(data: Any) -> Notification:
    """A decoded JSON body → Notification, or PayloadError naming the field."""
    _expect(data, dict, "body", "a JSON object (an Alertmanager webhook payload)")
    if "alerts" not in data:
        raise PayloadError("alerts: is required")
    raw_alerts = _expect(data["alerts"], list, "alerts", "a list")
    if not raw_alerts:
        raise PayloadError("alerts: must not be empty")
    alerts = tuple(parse_alert(a, f"alerts[{i}]") for i, a in enumerate(raw_alerts))
    truncated = data.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    _expect(truncated, int, "truncatedAlerts", "a whole number")
    version = data.get("version", "4")
    _expect(version, str, "version", "a string")
    status = _string(data, "status", "") or (
        "firing" if any(a.firing for a in alerts) else "resolved"
    )
    if status not in ("firing", "resolved"):
        raise PayloadError(f'status: must be "firing" or "resolved", got {status!r:.40}')
    group_labels = _string_map(data.get("groupLabels"), "groupLabels")
    return Notification(
        status=status,
        receiver=_string(data, "receiver", ""),
        group_key=_string(data, "groupKey", "")
        or _default_group_key(group_labels, (a.fingerprint for a in alerts)),
        group_labels=group_labels,
        common_labels=_string_map(data.get("commonLabels"), "commonLabels"),
        common_annotations=_string_map(data.get("commonAnnotations"), "commonAnnotations"),
        external_url=_string(data, "externalURL", ""),
        alerts=alerts,
        truncated_alerts=max(0, truncated),
        version=version,
        extra=dict(data["amfeishu"]) if isinstance(data.get("amfeishu"), dict) else {},
    )


def _default_group_key(group_labels: dict[str, str], fingerprints: Iterable[str]) -> str:
    if group_labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
        return "{}:{" + inner + "}"
    return "fingerprints:" + ",".join(sorted(fingerprints))


class _AlertIn(msgspec.Struct, gc=False):
    """An alert exactly as parse_alert accepts it (null for an optional string is '')."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] | None = None
    starts_at: str | None = msgspec.field(default=None, name="startsAt")
    ends_at: str | None = msgspec.field(default=None, name="endsAt")
    generator_url: str | None = msgspec.field(default=None, name="generatorURL")
    fingerprint: str | None = None


class _BodyIn(msgspec.Struct, gc=False):
    """A webhook body exactly as parse_notification accepts it."""

    alerts: Annotated[list[_AlertIn], msgspec.Meta(min_length=1)]
    status: Literal["firing", "resolved", ""] | None = None
    receiver: str | None = None
    group_key: str | None = msgspec.field(default=None, name="groupKey")
    group_labels: dict[str, str] | None = msgspec.field(default=None, name="groupLabels")
    common_labels: dict[str, str] | None = msgspec.field(default=None, name="commonLabels")
    common_annotations: dict[str, str] | None = msgspec.field(
        default=None, name="commonAnnotations"
    )
    external_url: str | None = msgspec.field(default=None, name="externalURL")
    truncated_alerts: int | None = msgspec.field(default=None, name="truncatedAlerts")
    version: str = "4"
    amfeishu: Any = None


_BODY = msgspec.json.Decoder(_BodyIn)


_GOOD_TIMES: set[str] = set()  # a group's alerts share start times, and every firing end


def _valid_time(text: str) -> bool:
    """RFC 3339 as Go prints it; remembered, since the same few strings come again."""
    if text in _GOOD_TIMES:
        return True
    if not _RFC3339.match(text):
        return False
    if len(_GOOD_TIMES) > 4096:  # bounded: a stream of new start times must not grow it
        _GOOD_TIMES.clear()
    _GOOD_TIMES.add(text)
    return True


def _checked(raw: bytes) -> _BodyIn | None:
    """The body as msgspec decodes it, when parse_notification would accept it too."""
    try:
        raw.decode()  # msgspec checks the UTF-8 of what it decodes, not of what it skips
        body = _BODY.decode(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    for a in body.alerts:
        starts, ends = a.starts_at, a.ends_at
        if (starts and not _valid_time(starts)) or (ends and not _valid_time(ends)):
            return None
    return body


def decode_notification(raw: bytes) -> Notification | None:
    """The received bytes → Notification, fast; None when parse_notification must decide
    (it refuses, naming the field, or takes what msgspec is stricter about, like NaN)."""
    body = _checked(raw)
    if body is None:
        return None
    found = tuple(
        Alert(
            a.status,
            a.labels,
            a.annotations or {},
            a.starts_at or "",
            a.ends_at or "",
            a.generator_url or "",
            a.fingerprint or _fingerprint(a.labels),
        )
        for a in body.alerts
    )
    group_labels = body.group_labels or {}
    extra = body.amfeishu
    return Notification(
        status=body.status or ("firing" if any(a.firing for a in found) else "resolved"),
        receiver=body.receiver or "",
        group_key=body.group_key
        or _default_group_key(group_labels, (a.fingerprint for a in found)),
        group_labels=group_labels,
        common_labels=body.common_labels or {},
        common_annotations=body.common_annotations or {},
        external_url=body.external_url or "",
        alerts=found,
        truncated_alerts=max(0, body.truncated_alerts or 0),
        version=body.version,
        extra=dict(extra) if isinstance(extra, dict) else {},
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the receiver needs of a body it stores as it came (a worker parses it whole
    when it takes it): no Alert or Notification built for a request, ~10 µs less."""

    status: str
    group_key: str
    alerts: tuple[tuple[str, str, str], ...]  # (fingerprint, status, startsAt) of each


def decode_receipt(raw: bytes) -> Receipt | None:
    """As decode_notification, accepting the same bodies, with what equals its
    Notification's status, group_key and alerts' (fingerprint, status, starts_at)."""
    body = _checked(raw)
    if body is None:
        return None
    alerts = tuple(
        (a.fingerprint or _fingerprint(a.labels), a.status, a.starts_at or "") for a in body.alerts
    )
    firing = any(status == "firing" for _, status, _ in alerts)
    fingerprints = [fingerprint for fingerprint, _, _ in alerts]
    return Receipt(
        status=body.status or ("firing" if firing else "resolved"),
        group_key=body.group_key or _default_group_key(body.group_labels or {}, fingerprints),
        alerts=alerts,
    )


def parse_stored(body: bytes) -> Notification:
    """An outbox entry's stored JSON → Notification; ValueError when it is not one."""
    notification = decode_notification(body)
    if notification is None:
        try:
            notification = parse_notification(json.loads(body))
        except RecursionError:
            raise ValueError("nests too deeply to be a webhook payload") from None
    return notification


def encode_notification(notification: Notification) -> bytes:
    """The JSON an outbox stores for a notification built here (not received whole)."""
    data = notification.to_dict()
    try:
        return msgspec.json.encode(data)
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" was valid JSON): keep it escaped
        return json.dumps(data).encode()
