"""The card built in Python when a template fails: it cannot fail, and the alert still goes out."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from amfeishu.cards.facts import (
    KIND_COLOURS,
    key_labels,
    kind_of,
    mentions_markdown,
    target_mentions,
    title,
)
from amfeishu.cards.storm import StormGroup, group_markdown
from amfeishu.cards.text import (
    alertmanager_url,
    between,
    md,
    oneline,
    plain,
    translate,
    truncate,
)
from amfeishu.config.types import Target
from amfeishu.models import Notification


def safe_message(
    n: Notification,
    target: Target,
    language: str,
    tz: tzinfo,
    compact: bool,
    omitted: int,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """The message for when a template fails: plain Python over validated data."""
    lang = "en" if language == "en" else "zh"
    kind, severity = kind_of(n)
    ids = target_mentions(n, target, kind)
    am_url = alertmanager_url(n.external_url, n.receiver, n.group_labels)
    plain_kind = target.msg_type in ("text", "post") and not target.card_template_id
    lines = _safe_lines(n, lang, compact, now, markdown=not plain_kind)
    if n.truncated_alerts:
        lines.append(translate(lang, "truncated", n=n.truncated_alerts))
    if omitted:  # the Alertmanager link follows: a button, or a line of its own
        lines.append(translate(lang, "more", n=omitted))
    footer = f"amfeishu · {target.name}"
    if n.extra.get("trace_id"):  # find the card's lines in the log by this id
        footer += f" · {n.extra['trace_id']}"
    if reason:
        footer += " · " + translate(lang, "safe_notice")
    heading = truncate(title(n, lang, target.keyword), 120)
    if plain_kind:
        return _safe_plain(target.msg_type, heading, lines, ids, am_url, footer, lang)
    head: dict[str, Any] = {"tag": "plain_text", "content": heading}
    if language == "auto":
        en = truncate(title(n, "en", target.keyword), 120)
        head["i18n_content"] = {"zh_cn": heading, "en_us": en}
    elements: list[dict[str, Any]] = []
    if ids:
        elements.append({"tag": "markdown", "content": mentions_markdown(ids)})
    elements.append({"tag": "markdown", "content": "\n".join(lines) or "-"})
    if am_url:
        elements.append(_button(translate(lang, "alertmanager"), am_url))
    elements.append(_plain_div(footer, text_size="notation", text_color="grey"))
    header_colour, tag_colour = KIND_COLOURS[kind]
    tag = _plain(translate(lang, severity or "unknown"))
    header = {
        "title": head,
        "text_tag_list": [{"tag": "text_tag", "text": tag, "color": tag_colour}],
        "template": header_colour,
    }
    card = {
        "schema": "2.0",
        "config": {"update_multi": True, "width_mode": "fill"},
        "header": header,
        "body": {"elements": elements},
    }
    return {"msg_type": "interactive", "card": card}


def _safe_lines(
    n: Notification, lang: str, compact: bool, now: datetime, *, markdown: bool
) -> list[str]:
    esc = md if markdown else plain
    bold = "**" if markdown else ""
    lines = []
    for section, alerts in (("firing_section", n.firing), ("resolved_section", n.resolved)):
        if n.firing and n.resolved and alerts:
            lines.append(f"{bold}{translate(lang, section)} ({len(alerts)}){bold}")
        for a in alerts:
            parts = [bold + esc(truncate(oneline(a.name) or "?", 80)) + bold]
            if compact:
                key = next(iter(key_labels(a.labels, {}, 1).values()), "")
                parts.append(esc(truncate(oneline(key), 60)))
                parts.append(between(a.starts_at, now if a.firing else a.ends_at))
            else:
                summary = a.annotations.get("summary") or a.annotations.get("description", "")
                severity = a.severity.lower()
                parts.append(esc(translate(lang, severity)) if severity else "")
                parts.append(esc(truncate(oneline(summary), 200)))
            lines.append("- " + " · ".join(p for p in parts if p))
    return lines


def _safe_plain(
    msg_type: str,
    heading: str,
    lines: list[str],
    ids: list[str],
    am_url: str,
    footer: str,
    lang: str,
) -> dict[str, Any]:
    if msg_type == "text":
        everyone = translate(lang, "everyone")
        at = " ".join(
            f'<at user_id="all">{everyone}</at>' if i == "all" else f'<at user_id="{i}"></at>'
            for i in ids
        )
        parts = [plain(heading), *lines, am_url, at, footer]
        return {"msg_type": "text", "content": {"text": "\n".join(p for p in parts if p)}}
    content: list[list[dict[str, Any]]] = [[{"tag": "text", "text": line}] for line in lines]
    if ids:
        content.append([{"tag": "at", "user_id": i} for i in ids])
    if am_url:
        content.append([{"tag": "a", "text": "Alertmanager", "href": am_url}])
    content.append([{"tag": "text", "text": footer}])
    post = {"title": plain(heading), "content": content}
    return {"msg_type": "post", "content": {"post": {"en_us" if lang == "en" else "zh_cn": post}}}


def _plain(text: str, **style: str) -> dict[str, Any]:
    return {"tag": "plain_text", "content": text, **style}


def _plain_div(text: str, **style: str) -> dict[str, Any]:
    return {"tag": "div", "text": _plain(text, **style)}


def _button(text: str, url: str) -> dict[str, Any]:
    behaviour = {"type": "open_url", "default_url": url}
    return {"tag": "button", "text": _plain(text), "type": "default", "behaviors": [behaviour]}


def safe_storm(
    n: Notification, groups: list[StormGroup], target: Target, language: str, reason: str
) -> dict[str, Any]:
    """A storm digest without templates: every group's line, every alert named."""
    lang = "en" if language == "en" else "zh"
    total = sum(g.count for g in groups)
    firing = [g.severity for g in groups if g.firing]
    kind = next((s for s in ("critical", "warning", "info") if s in firing), "")
    kind = kind or ("resolved" if not firing else "default")
    heading = translate(lang, "storm_title", n=total)
    if target.keyword and target.keyword not in heading:
        heading = f"{target.keyword} {heading}"
    footer = f"amfeishu · {target.name}"
    if n.extra.get("trace_id"):
        footer += f" · {n.extra['trace_id']}"
    if reason:
        footer += " · " + translate(lang, "safe_notice")
    elements: list[dict[str, Any]] = [
        {"tag": "markdown", "content": translate(lang, "storm_notice")},
        *({"tag": "markdown", "content": group_markdown(lang, g)} for g in groups),
        _plain_div(footer, text_size="notation", text_color="grey"),
    ]
    card = {
        "schema": "2.0",
        "config": {"update_multi": True, "width_mode": "fill"},
        "header": {"title": _plain(heading), "template": KIND_COLOURS[kind][0]},
        "body": {"elements": elements},
    }
    return {"msg_type": "interactive", "card": card}
