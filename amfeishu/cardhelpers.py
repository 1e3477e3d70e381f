"""The data side of templating.py: mentions, the template context, card checks
and the safe message (text, URL and time helpers are in cardtext.py).

Nothing here knows about Jinja: each is a plain function of its arguments,
shared by the templates (as context) and the safe message.
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import datetime, tzinfo
from functools import partial
from typing import Any

from amfeishu.cardtext import (
    alertmanager_url,
    as_time,
    base_url,
    between,
    is_http_url,
    local_time,
    md,
    md_oneline,
    md_url,
    oneline,
    plain,
    safe_url,
    silence_url_at,
    translate,
    truncate,
)
from amfeishu.models import SEVERITY_ORDER, Alert, Notification
from amfeishu.settings import Target

# Header colours of card JSON 2.0, exactly (feishu-api.md §6.3).
HEADER_COLOURS = frozenset(
    ("blue", "wathet", "turquoise", "green", "yellow", "orange", "red", "carmine", "violet",
     "purple", "indigo", "grey", "default")
)  # fmt: skip
# kind (template file) → (header colour, severity tag colour)
KIND_COLOURS = {
    "critical": ("red", "red"),
    "warning": ("orange", "orange"),
    "info": ("blue", "blue"),
    "resolved": ("green", "neutral"),
    "default": ("grey", "neutral"),
}
OPEN_ID = re.compile(r"ou_[A-Za-z0-9_-]+")  # used with fullmatch: no "ou_x\n"
# Labels worth showing on a card, in display order; the rest stay in Alertmanager.
KEY_LABELS = (
    "cluster", "namespace", "instance", "job", "service", "pod", "container", "node",
    "deployment", "statefulset", "daemonset", "persistentvolumeclaim", "mountpoint",
    "device", "host", "hostname", "endpoint", "env", "environment", "region",
)  # fmt: skip
_HIDDEN_LABELS = frozenset({"alertname", "severity"})

# ---- labels and mentions --------------------------------------------------


def highest_severity(severities: Any) -> str:
    present = {str(s).lower() for s in severities}
    return next((s for s in SEVERITY_ORDER if s in present), "")


def key_labels(labels: dict[str, str], skip: dict[str, str], limit: int = 6) -> dict[str, str]:
    """The KEY_LABELS present in labels, minus those already shown in skip."""
    out: dict[str, str] = {}
    for key in [k for k in KEY_LABELS if k in labels]:
        if len(out) >= limit:
            break
        if skip.get(key) != labels[key]:
            out[key] = labels[key]
    return out


def header_labels(group: dict[str, str], common: dict[str, str], limit: int = 4) -> dict[str, str]:
    """Labels for the header subtitle: the group's (but alertname), else common key labels."""
    shown = {k: v for k, v in group.items() if k not in _HIDDEN_LABELS}
    if not shown:
        shown = key_labels(common, {}, limit)
    return dict(list(shown.items())[:limit])


_SPLIT_IDS = re.compile(r"[\s,;，、]+")


def mention_ids(configured: Any, alerts: Any, label: str) -> list[str]:
    """Ids to @: configured ("all" or open_ids) then the mention label of alerts, deduplicated.

    Everything is validated: only "all" (from config) and ^ou_…$ ids pass, so
    a label can neither @all nor smuggle markup into the <at> tag.
    """
    ids: list[str] = []
    for item in configured or ():
        item = str(item).strip()
        if item == "all" or OPEN_ID.fullmatch(item):
            ids.append(item)
    for alert in alerts if label else ():
        for source in (alert.labels, alert.annotations):
            for token in _SPLIT_IDS.split(source.get(label, "")):
                if OPEN_ID.fullmatch(token):
                    ids.append(token)
    return list(dict.fromkeys(ids))


def mentions_markdown(ids: list[str]) -> str:
    return " ".join(f"<at id={i}></at>" for i in ids)


# ---- message checks and fix-ups ------------------------------------------

_ONE_ZERO_TAGS = frozenset({"note", "action"})
_NESTED = (list, dict)


def card_problem(message: Any) -> str | None:
    """Why message is not a Feishu webhook message we may send, or None."""
    if not isinstance(message, dict):
        return "output must be a JSON object"
    kind = message.get("msg_type")
    if kind == "interactive":
        if "content" in message:
            return "an interactive message carries its card in 'card', not 'content'"
        card = message.get("card")
        if not isinstance(card, dict):
            return "card: must be an object"
        if card.get("type") == "template":
            data = card.get("data")
            if not isinstance(data, dict) or not isinstance(data.get("template_id"), str):
                return "card.data.template_id: must be a string"
            if not isinstance(data.get("template_variable", {}), dict):
                return "card.data.template_variable: must be an object"
            return None
        return _card_v2_problem(card)
    if kind == "text":
        content = message.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("text"), str):
            return "content.text: must be a string"
        return None
    if kind == "post":
        content = message.get("content")
        post = content.get("post") if isinstance(content, dict) else None
        if not isinstance(post, dict) or not post:
            return "content.post: must be an object with zh_cn and/or en_us"
        for lang, body in post.items():
            if not isinstance(body, dict) or not isinstance(body.get("content"), list):
                return f"content.post.{lang}.content: must be a list of paragraphs"
            if not all(isinstance(p, list) for p in body["content"]):
                return f"content.post.{lang}.content: each paragraph must be a list"
        return None
    return f"msg_type: must be interactive, text or post, got {kind!r:.40}"


def _card_v2_problem(card: dict[str, Any]) -> str | None:
    if card.get("schema") != "2.0":
        return 'card.schema: must be "2.0"'
    if "elements" in card or "i18n_elements" in card:
        return "card.elements: JSON 1.0 only; put elements in card.body.elements"
    if "wide_screen_mode" in (card.get("config") or {}):
        return "card.config.wide_screen_mode: JSON 1.0 only"
    header = card.get("header")
    if not isinstance(header, dict):
        return "card.header: must be an object"
    colour = header.get("template")
    if colour not in HEADER_COLOURS:
        return f"card.header.template: must be a Feishu header colour, got {colour!r:.40}"
    title = header.get("title")
    if not isinstance(title, dict) or not isinstance(title.get("content"), str):
        return "card.header.title.content: must be a string"
    body = card.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("elements"), list):
        return "card.body.elements: must be a list"
    return _elements_problem(body["elements"], "card.body.elements")


def _elements_problem(node: Any, path: str) -> str | None:
    trail: list[str] = []  # the problem's path below node, innermost first
    problem = _element_problem(node, trail)
    return None if problem is None else path + "".join(reversed(trail)) + problem


def _element_problem(node: Any, trail: list[str]) -> str | None:
    # The first problem depth-first; its path is built on the way out.
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, _NESTED):
                problem = _element_problem(item, trail)
                if problem is not None:
                    trail.append(f"[{i}]")
                    return problem
        return None
    if not isinstance(node, dict):
        return None
    if node.get("tag") in _ONE_ZERO_TAGS:
        return f": tag {node['tag']!r} is JSON 1.0 only"
    if "default_url" in node and not is_http_url(node["default_url"]):
        return f".default_url: must be an http(s) URL, got {node['default_url']!r:.60}"
    for key, value in node.items():
        if isinstance(value, _NESTED):
            problem = _element_problem(value, trail)
            if problem is not None:
                trail.append(f".{key}")
                return problem
    return None


def merge_i18n(zh: Any, en: Any) -> Any:
    """The zh card with i18n_content {zh_cn, en_us} wherever the en rendering differs.

    zh_cn is repeated in i18n_content because a client whose language is
    missing there falls back to another listed language, not to content.
    """
    if isinstance(zh, dict) and isinstance(en, dict):
        out = {k: merge_i18n(v, en[k]) if k in en else v for k, v in zh.items()}
        zc, ec = zh.get("content"), en.get("content")
        if isinstance(zc, str) and isinstance(ec, str) and zc != ec and "i18n_content" not in zh:
            out["i18n_content"] = {"zh_cn": zc, "en_us": ec}
        return out
    if isinstance(zh, list) and isinstance(en, list) and len(zh) == len(en):
        return [merge_i18n(a, b) for a, b in zip(zh, en, strict=True)]
    return zh


def merge_posts(zh: Any, en: Any) -> Any:
    """A post message with the languages of both renderings (zh_cn and en_us)."""
    # a malformed rendering stays as it is: card_problem names what is wrong
    with suppress(KeyError, TypeError, AttributeError):
        zh["content"]["post"].update(en["content"]["post"])
    return zh


def ensure_keyword(message: dict[str, Any], keyword: str | None) -> dict[str, Any]:
    """Put the bot's keyword in the title/text when the template left it out (else 19024).

    message must have passed card_problem.
    """
    if not keyword:
        return message
    kind = message.get("msg_type")
    if kind == "text":
        content = message["content"]
        if keyword not in content["text"]:
            content["text"] = f"{keyword} {content['text']}"
    elif kind == "post":
        for body in message["content"]["post"].values():
            if keyword not in str(body.get("title", "")):
                body["title"] = f"{keyword} {body.get('title', '')}".rstrip()
    elif kind == "interactive" and isinstance(message["card"].get("header"), dict):
        title = message["card"]["header"]["title"]
        if keyword not in title["content"]:
            title["content"] = f"{keyword} {title['content']}"
        for lang, text in (title.get("i18n_content") or {}).items():
            if isinstance(text, str) and keyword not in text:
                title["i18n_content"][lang] = f"{keyword} {text}"
    return message


# ---- the template context ---------------------------------------------------


def kind_of(n: Notification) -> tuple[str, str]:
    """(kind, severity): kind picks the file and colours, severity names the tag.

    kind is "resolved" when no alert fires, else the highest known severity
    of the firing alerts, else "default". severity is the highest known one
    of the firing alerts (all alerts when none fires), else the first
    severity label seen, else ''.
    """
    firing = n.firing
    alerts = firing or list(n.alerts)
    known = highest_severity(a.severity for a in alerts)
    severity = known or next((a.severity.lower() for a in alerts if a.severity), "")
    if not firing:
        return "resolved", severity
    return (known or "default"), severity


def alertname(n: Notification) -> str:
    name = n.group_labels.get("alertname") or n.common_labels.get("alertname")
    if name:
        return name
    names = list(dict.fromkeys(a.name for a in n.alerts if a.name))
    return truncate(", ".join(names), 60) if names else n.receiver


def title(n: Notification, language: str, keyword: str | None) -> str:
    """[FIRING:2] HighCPU / [告警:2] HighCPU / [RESOLVED] … with the keyword in front."""
    if n.firing:
        head = f"[{translate(language, 'firing')}:{len(n.firing)}]"
    else:
        head = f"[{translate(language, 'resolved')}]"
    text = f"{head} {oneline(alertname(n))}"
    return f"{keyword} {text}" if keyword and keyword not in text else text


def target_mentions(n: Notification, target: Target, kind: str) -> list[str]:
    return mention_ids(target.mentions.get(kind, ()), n.firing, target.mention_label)


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


_URL_KEYS = ("runbook", "dashboard", "source")
_LINK_KEYS = ("runbook", "dashboard", "source", "silence")


def context(
    n: Notification,
    target: Target,
    language: str,
    tz: tzinfo,
    compact: bool,
    omitted: int,
    now: datetime,
) -> dict[str, Any]:
    """Every name templating.py documents, except those of for_language()."""
    kind, severity = kind_of(n)
    ids = target_mentions(n, target, kind)
    subtitle = header_labels(n.group_labels, n.common_labels)
    base = base_url(n.external_url)
    limit = 1000 if len(n.alerts) == 1 else 300  # of description_text
    alerts = [_alert_view(a, base, tz, now, subtitle, limit) for a in n.alerts]
    firing = [a for a in alerts if a["firing"]]
    links = {}
    for key in _URL_KEYS:  # a card-level link when every alert has the same one
        urls = {a[f"{key}_url"] for a in alerts}
        links[key] = urls.pop() if len(urls) == 1 else ""
    links["silence"] = silence_url_at(base, _common([a["labels"] for a in firing]))
    links["alertmanager"] = alertmanager_url(n.external_url, n.receiver, n.group_labels)
    for view in alerts:
        own = {k: "" if view[f"{k}_url"] == links[k] else view[f"{k}_url"] for k in _URL_KEYS}
        own["silence"] = view["silence_url"] if view["firing"] and len(firing) > 1 else ""
        view["links"] = own
    return {
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": dict(n.common_labels),
        "commonAnnotations": dict(n.common_annotations),
        "externalURL": n.external_url,
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated_alerts,
        "alerts": alerts,
        "firing": firing,
        "resolved": [a for a in alerts if not a["firing"]],
        "severity": severity,
        "kind": kind,
        "alertname": alertname(n),
        "subtitle_labels": subtitle,
        "subtitle": " · ".join(f"{k}={v}" for k, v in subtitle.items()),
        "links": links,
        "target": {
            "name": target.name,
            "language": language,
            "timezone": str(tz),  # the one in effect
            "keyword": target.keyword or "",
            "msg_type": target.msg_type,
        },
        "compact": compact,
        "omitted": omitted,
        "mentions_md": mentions_markdown(ids),
        "mention_ids": ids,
        "extra": dict(n.extra),
        "now": now,
        "silence_url": partial(_silence_for, base),
        "alertmanager_url": links["alertmanager"],
        "since": lambda value: between(value, now),
        "local_time": lambda value: local_time(value, tz),
        "alert_md_line": alert_md_line,
    }


def for_language(n: Notification, language: str, keyword: str | None) -> dict[str, Any]:
    """The names of the context that depend on the language ("zh" or "en")."""
    return {
        "language": language,
        "t": partial(translate, language),
        "title": title(n, language, keyword),
        "alert_md": partial(alert_md, language),
    }


def _silence_for(base: str, alert_or_labels: Any) -> str:
    labels = alert_or_labels
    if isinstance(labels, dict) and isinstance(labels.get("labels"), dict):
        labels = labels["labels"]
    if not isinstance(labels, dict):
        return ""
    return silence_url_at(base, {str(k): str(v) for k, v in labels.items()})


def _alert_view(
    a: Alert, base: str, tz: tzinfo, now: datetime, shown: dict[str, str], limit: int
) -> dict[str, Any]:
    annotations = a.annotations
    firing = a.status == "firing"
    summary = annotations.get("summary", "")
    description = annotations.get("description") or annotations.get("message", "")
    starts = as_time(a.starts_at)  # parsed once for the local time and the duration
    ends = None if firing else as_time(a.ends_at)
    view = a.to_dict()
    view.update(
        name=a.name,
        severity=a.severity.lower(),
        firing=firing,
        summary=summary,
        description=description,
        starts_at_local=local_time(starts, tz),
        ends_at_local="" if firing else local_time(ends, tz),
        duration=between(starts, now if firing else ends),
        silence_url=silence_url_at(base, a.labels),
        source_url=safe_url(a.generator_url),
        runbook_url=safe_url(annotations.get("runbook_url")),
        dashboard_url=safe_url(annotations.get("dashboard_url")),
        key_labels=key_labels(a.labels, shown),
        description_text=(
            truncate(plain(description), limit) if description and description != summary else ""
        ),
    )
    return view


def alert_md(language: str, a: dict[str, Any]) -> str:
    """The markdown of one alert (an item of alerts) in the built-in card.

    Its name and summary, key labels, start or end time and duration, and its
    own links, a line each; label and annotation text is md-escaped.
    """
    name, summary = a["name"], a["summary"]
    head = "**" + md_oneline(name, 80) + "**"
    if summary and summary != name:
        head += " · " + md_oneline(summary, 200)
    lines = [head]
    labels = a["key_labels"]
    if labels:
        shown = [md(k) + ": " + md_oneline(v, 80) for k, v in labels.items()]
        lines.append("<font color='grey'>" + " · ".join(shown) + "</font>")
    if a["firing"]:
        when, at, how = "started", a["starts_at_local"], "for"
    else:
        when, at, how = "ended", a["ends_at_local"], "lasted"
    line = translate(language, when) + " " + (at or "?")
    if a["duration"]:
        line += " · " + translate(language, how, d=a["duration"])
    lines.append("<font color='grey'>" + line + "</font>")
    links = a["links"]
    own = [f"[{translate(language, k)}]({md_url(links[k])})" for k in _LINK_KEYS if links[k]]
    if own:
        lines.append(" · ".join(own))
    return "\n".join(lines)


def alert_md_line(a: dict[str, Any]) -> str:
    """One alert as a markdown list item for compact cards: name, first key label, duration."""
    line = "- **" + md_oneline(a["name"], 60) + "**"
    key = next(iter(a["key_labels"].values()), "")
    if key:
        line += " · " + md_oneline(key, 60)
    if a["duration"]:
        line += " · " + a["duration"]
    return line


# ---- the safe message -------------------------------------------------------


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
