"""What an app card shows of what people did, and the buttons that call back.

The `app` name of the template context (docs/templates.md, "App cards"): the
"acknowledged by / silenced until" lines and the callback buttons, whose
`value` objects are the contract of README.md, "Feishu app mode":
{"action": "ack"}, {"action": "silence", "duration": "1h"},
{"action": "unsilence", "silence_id": "…"} (the ids, comma-separated, when a
click made several), each with the target ("t") and the alert group ("g") they act on.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, tzinfo
from typing import Any

from amfeishu.backend.cards import CardRecord
from amfeishu.cards.text import local_time, translate, zone
from amfeishu.config.types import OPEN_ID, AppDelivery, Target


def group_id(group_key: str) -> str:
    """A short, stable id of an alert group (button values carry it)."""
    return hashlib.sha256(group_key.encode()).hexdigest()[:16]


def person(open_id: str) -> str:
    """Markup that Feishu shows as the person's name (only for a valid open_id)."""
    return f"<at id={open_id}></at>" if OPEN_ID.fullmatch(open_id) else "?"


def app_context(
    record: CardRecord | None,
    delivery: AppDelivery,
    target: str,
    group: str,
    language: str,
    tz: tzinfo,
    firing: bool,
    now: float,
) -> dict[str, Any]:
    """`app` in the template context: state lines (markdown, ready) and buttons."""
    lang = "en" if language == "en" else "zh"
    lines = []
    base = {"t": target, "g": group}
    acked = record is not None and bool(record.acked_by)
    silenced = record is not None and record.silenced_until > now and bool(record.silence_ids)
    if record is not None and acked:
        at = local_time(datetime.fromtimestamp(record.acked_at, UTC), tz)
        lines.append(translate(lang, "acked", who=person(record.acked_by), at=at))
    if record is not None and silenced:
        until = local_time(datetime.fromtimestamp(record.silenced_until, UTC), tz)
        lines.append(translate(lang, "silenced", who=person(record.silenced_by), until=until))
    buttons: list[dict[str, Any]] = []
    if "ack" in delivery.actions and not acked and firing:
        buttons.append(_button(translate(lang, "ack"), "primary", {"action": "ack", **base}))
    if "silence" in delivery.actions and firing and not silenced:
        for duration in delivery.silence_durations:
            value = {"action": "silence", "duration": duration, **base}
            buttons.append(_button(translate(lang, "silence_for", d=duration), "default", value))
    if record is not None and silenced and "silence" in delivery.actions:
        # every silence the click made (one per alert when they share no label), so the
        # button expires exactly these, never a later silence of the group
        value = {"action": "unsilence", "silence_id": ",".join(record.silence_ids), **base}
        buttons.append(_button(translate(lang, "unsilence"), "danger", value))
    return {
        "state_md": "\n".join(lines),
        "buttons": buttons,
        "acked_by": record.acked_by if record else "",
        "silenced_until": record.silenced_until if silenced and record else 0,
        "group": group,
    }


def _button(label: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, "type": kind, "value": value}


def sample_app_context(target: Target) -> dict[str, Any] | None:
    """An app target's context with every button and both state lines, for trial renders
    and the playground; None for other targets."""
    if target.app is None:
        return None
    record = CardRecord(target.name, "0123456789abcdef", acked_by="ou_sample", acked_at=1.7e9)
    record.silence_ids, record.silenced_by, record.silenced_until = ["s1"], "ou_sample", 4e9
    tz, language = zone(target.timezone), target.language
    full = app_context(record, target.app, target.name, record.group, language, tz, True, 0)
    none = app_context(None, target.app, target.name, record.group, language, tz, True, 0)
    return {**full, "buttons": none["buttons"] + full["buttons"]}
