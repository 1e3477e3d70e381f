"""The data side of templating.py: escaping, URLs, times, mentions, the template
context, card checks and the safe message.

Nothing here knows about Jinja: each is a plain function of its arguments,
shared by the templates (as filters and context) and the safe message.
"""

from __future__ import annotations

import json
import re
from contextlib import suppress
from datetime import UTC, datetime, tzinfo
from functools import lru_cache, partial
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amfeishu.models import SEVERITY_ORDER, Alert, Notification, parse_time
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

STRINGS: dict[str, tuple[str, str]] = {  # key → (zh, en)
    "firing": ("告警", "FIRING"),
    "resolved": ("已恢复", "RESOLVED"),
    "firing_section": ("告警中", "Firing"),
    "resolved_section": ("已恢复", "Resolved"),
    "started": ("开始", "Started"),
    "ended": ("结束", "Ended"),
    "for": ("已持续 {d}", "for {d}"),
    "lasted": ("持续了 {d}", "lasted {d}"),
    "source": ("来源", "Source"),
    "runbook": ("处理手册", "Runbook"),
    "dashboard": ("监控面板", "Dashboard"),
    "silence": ("静默", "Silence"),
    "alertmanager": ("Alertmanager", "Alertmanager"),
    "more": ("另有 {n} 条告警，请在 Alertmanager 查看", "{n} more in Alertmanager"),
    "truncated": ("Alertmanager 截断了 {n} 条告警", "{n} alerts truncated by Alertmanager"),
    "critical": ("严重", "critical"),
    "warning": ("警告", "warning"),
    "info": ("提示", "info"),
    "unknown": ("未知", "unknown"),
    "everyone": ("所有人", "everyone"),
    "safe_notice": ("简化卡片，原因见 amfeishu 日志", "simplified card; the amfeishu log says why"),
}


def translate(language: str, key: str, **values: Any) -> str:
    """The zh or en string for key; an unknown key comes back as itself."""
    pair = STRINGS.get(key)
    if pair is None:
        return key
    text = pair[1] if language == "en" else pair[0]
    return text.format(**values) if values else text


# ---- text -----------------------------------------------------------------

# Feishu markdown renders HTML entities, so specials become entities rather
# than backslash escapes (a backslash before an entity would show it raw).
_MD_ESCAPES = {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "&#92;", "`": "&#96;",
    "*": "&#42;", "_": "&#95;", "~": "&#126;", "[": "&#91;", "]": "&#93;",
    "(": "&#40;", ")": "&#41;", "#": "&#35;", "|": "&#124;",
}  # fmt: skip
_MD_SPECIAL = re.compile("[" + re.escape("".join(_MD_ESCAPES)) + "]")
# list items, setext headings and rules begin a line with one of these
_MD_LINE_START = re.compile(r"^([ \t]*)([-+=])", re.MULTILINE)
_AT_TAG = re.compile(r"<(\s*/?\s*at\b)", re.IGNORECASE)


def md(value: Any) -> str:
    """Text for a markdown element: markdown, HTML and <at> tags show literally."""
    if value is None:
        return ""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    text = _MD_SPECIAL.sub(lambda m: _MD_ESCAPES[m.group()], text)
    return _MD_LINE_START.sub(lambda m: m.group(1) + f"&#{ord(m.group(2))};", text)


def plain(value: Any) -> str:
    """Text for text/post messages and plain_text: an <at …> tag mentions nobody."""
    if value is None:
        return ""
    return _AT_TAG.sub(r"＜\1", str(value).replace("\r\n", "\n"))


def oneline(value: Any) -> str:
    """Whitespace runs (newlines too) as one space: for labels, names and titles."""
    return " ".join(str(value).split()) if value is not None else ""


def truncate(value: Any, length: int = 255, end: str = "…") -> str:
    """At most length characters (end included); never cuts an &entity; in half."""
    text = "" if value is None else str(value)
    if len(text) <= length:
        return text
    cut = text[: max(0, length - len(end))]
    amp = cut.rfind("&", max(0, len(cut) - 8))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + end


def json_escape(value: Any) -> str:
    """The inside of a JSON string literal holding str(value)."""
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


# ---- URLs -----------------------------------------------------------------

_HTTP = re.compile(r"^https?://[^\s/?#]", re.IGNORECASE)


def is_http_url(value: Any) -> bool:
    """An http(s) URL as it stands: no spaces or control characters to quote first."""
    return isinstance(value, str) and bool(_HTTP.match(value)) and safe_url(value) == value


def safe_url(value: Any) -> str:
    """An http(s) URL made safe to put in a card, or '' (Feishu needs http(s))."""
    url = "" if value is None else str(value).strip()
    if not _HTTP.match(url):
        return ""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


def md_url(value: Any) -> str:
    """safe_url for a markdown link target: brackets and parentheses encoded too."""
    url = safe_url(value)
    for char, code in (("(", "%28"), (")", "%29"), ("[", "%5B"), ("]", "%5D")):
        url = url.replace(char, code)
    return url


def _base(external_url: str) -> str:
    return safe_url(external_url).rstrip("/")


def matchers_text(labels: dict[str, str]) -> str:
    """Labels in Alertmanager's filter syntax: {alertname="X",job="y"}, alertname first."""
    keys = sorted(labels, key=lambda k: (k != "alertname", k))
    inner = ",".join(f'{k}="{_matcher_value(labels[k])}"' for k in keys)
    return "{" + inner + "}"


def _matcher_value(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def silence_url(external_url: str, labels: dict[str, str]) -> str:
    """Alertmanager's new-silence form prefilled with these labels; '' without a base URL."""
    base = _base(external_url)
    if not base or not labels:
        return ""
    return f"{base}/#/silences/new?filter={quote(matchers_text(labels), safe='')}"


_REGEX_META = re.compile(r"([.^$*+?()\[\]{}|\\])")


def alertmanager_url(external_url: str, receiver: str, group_labels: dict[str, str]) -> str:
    """Alertmanager's alert list for this receiver (a regex there) and group."""
    base = _base(external_url)
    if not base:
        return ""
    url = f"{base}/#/alerts"
    params = []
    if receiver:
        params.append("receiver=" + quote(_REGEX_META.sub(r"\\\1", receiver), safe=""))
    if group_labels:
        params.append("filter=" + quote(matchers_text(group_labels), safe=""))
    return url + ("?" + "&".join(params) if params else "")


# ---- times ----------------------------------------------------------------


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """ZoneInfo for name; UTC when the name is unknown (config checks names)."""
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_time(value) if isinstance(value, str) else None


def local_time(value: Any, tz: tzinfo) -> str:
    """'2026-11-28 21:46:21 CST' in tz; '' for '' or Go's zero time."""
    when = as_time(value)
    if when is None:
        return ""
    local = when.astimezone(tz)
    name = local.tzname() or ""
    if not name.isalpha():  # zones without an abbreviation print "+04"
        offset = local.strftime("%z")
        name = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    return local.strftime("%Y-%m-%d %H:%M:%S ") + name


def human_duration(seconds: float) -> str:
    """45s, 5m, 2h3m, 1d4h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h}h" if h else f"{d}d"


def between(start: Any, end: Any) -> str:
    """Human duration from start to end (times or RFC 3339); '' if either is unknown."""
    a, b = as_time(start), as_time(end)
    return "" if a is None or b is None else human_duration((b - a).total_seconds())


# ---- labels and mentions --------------------------------------------------


def highest_severity(severities: Any) -> str:
    present = {str(s).lower() for s in severities}
    return next((s for s in SEVERITY_ORDER if s in present), "")


def key_labels(labels: dict[str, str], skip: dict[str, str], limit: int = 6) -> dict[str, str]:
    """The KEY_LABELS present in labels, minus those already shown in skip."""
    out: dict[str, str] = {}
    for key in KEY_LABELS:
        if key in labels and skip.get(key) != labels[key] and len(out) < limit:
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
    if isinstance(node, list):
        for i, item in enumerate(node):
            problem = _elements_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(node, dict):
        return None
    if node.get("tag") in _ONE_ZERO_TAGS:
        return f"{path}: tag {node['tag']!r} is JSON 1.0 only"
    if "default_url" in node and not is_http_url(node["default_url"]):
        return f"{path}.default_url: must be an http(s) URL, got {node['default_url']!r:.60}"
    for key, value in node.items():
        if isinstance(value, list | dict):
            problem = _elements_problem(value, f"{path}.{key}")
            if problem:
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
    alerts = n.firing or list(n.alerts)
    known = highest_severity(a.severity for a in alerts)
    severity = known or next((a.severity.lower() for a in alerts if a.severity), "")
    if not n.firing:
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


def context(
    n: Notification,
    target: Target,
    language: str,
    tz: tzinfo,
    compact: bool,
    omitted: int,
    now: datetime,
) -> dict[str, Any]:
    """Every name templating.py documents, except language, t and title (per language)."""
    kind, severity = kind_of(n)
    ids = target_mentions(n, target, kind)
    subtitle = header_labels(n.group_labels, n.common_labels)
    base = n.external_url
    alerts = [_alert_view(a, base, tz, now, subtitle) for a in n.alerts]
    links = {}
    for key in _URL_KEYS:  # a card-level link when every alert has the same one
        urls = {a[f"{key}_url"] for a in alerts}
        links[key] = urls.pop() if len(urls) == 1 else ""
    links["silence"] = silence_url(base, _common([a.labels for a in n.firing]))
    links["alertmanager"] = alertmanager_url(base, n.receiver, n.group_labels)
    for view in alerts:
        own = {k: "" if view[f"{k}_url"] == links[k] else view[f"{k}_url"] for k in _URL_KEYS}
        own["silence"] = view["silence_url"] if view["firing"] and len(n.firing) > 1 else ""
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
        "firing": [a for a in alerts if a["firing"]],
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
    }


def _silence_for(base: str, alert_or_labels: Any) -> str:
    labels = alert_or_labels
    if isinstance(labels, dict) and isinstance(labels.get("labels"), dict):
        labels = labels["labels"]
    if not isinstance(labels, dict):
        return ""
    return silence_url(base, {str(k): str(v) for k, v in labels.items()})


def _alert_view(
    a: Alert, base: str, tz: tzinfo, now: datetime, shown: dict[str, str]
) -> dict[str, Any]:
    view = a.to_dict()
    view.update(
        name=a.name,
        severity=a.severity.lower(),
        firing=a.firing,
        summary=a.annotations.get("summary", ""),
        description=a.annotations.get("description") or a.annotations.get("message", ""),
        starts_at_local=local_time(a.starts_at, tz),
        ends_at_local="" if a.firing else local_time(a.ends_at, tz),
        duration=between(a.starts_at, now if a.firing else a.ends_at),
        silence_url=silence_url(base, a.labels),
        source_url=safe_url(a.generator_url),
        runbook_url=safe_url(a.annotations.get("runbook_url")),
        dashboard_url=safe_url(a.annotations.get("dashboard_url")),
        key_labels=key_labels(a.labels, shown),
    )
    return view


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
