"""Words, text, URLs and times for cards: translations, escaping, safe links,
local times, durations.

Plain functions of their arguments, shared by the templates (as filters and
context) and by the safe card (cards/safe.py). They run for every alert
of every card, so the common cases take fast paths that give exactly what the
general code gives.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) uses
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amfeishu.models import parse_time

# ---- words ------------------------------------------------------------------

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
    "storm_title": ("[告警风暴] {n} 条告警", "[STORM] {n} alerts"),
    "storm_notice": (
        "告警过多，此为摘要：每条告警都列出，详情请在 Alertmanager 查看",
        "Too many alerts at once: a digest naming every alert; details in Alertmanager",
    ),
    "storm_singles": ("其他告警", "Other alerts"),
    "ack": ("认领", "Acknowledge"),
    "acked": ("✅ {who} 已认领 · {at}", "✅ Acknowledged by {who} · {at}"),
    "silence_for": ("静默 {d}", "Silence {d}"),
    "silenced": ("🔕 已静默至 {until}（{who}）", "🔕 Silenced until {until} by {who}"),
    "unsilence": ("取消静默", "Unsilence"),
    "toast_acked": ("已认领", "Acknowledged"),
    "toast_silenced": ("已静默 {d}", "Silenced for {d}"),
    "toast_unsilenced": ("已取消静默", "Silence expired"),
    "toast_no_am": (
        "Alertmanager 不可用，未做任何更改：{why}",
        "Alertmanager failed; nothing changed: {why}",
    ),
    "toast_unknown": ("找不到这张卡片的告警组", "This card's alert group is unknown here"),
    "toast_busy": ("暂时无法处理，请稍后再试", "Cannot do that now; try again shortly"),
    "reply_resolved": ("✅ 已恢复：{title}", "✅ Resolved: {title}"),
    "reply_raised": ("⬆️ 升级为{severity}：{title}", "⬆️ Now {severity}: {title}"),
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
_MD_TABLE = str.maketrans(_MD_ESCAPES)
_MD_SPECIAL = re.compile("[" + re.escape("".join(_MD_ESCAPES)) + "]")
# list items, setext headings and rules begin a line with one of these
_MD_LINE_START = re.compile(r"^([ \t]*)([-+=])", re.MULTILINE)
_LINE_MARKS = ("-", "+", "=")
_AT_TAG = re.compile(r"<(\s*/?\s*at\b)", re.IGNORECASE)


def md(value: Any) -> str:
    """Text for a markdown element: markdown, HTML and <at> tags show literally."""
    if value is None:
        return ""
    text = str(value)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _MD_SPECIAL.search(text):
        text = text.translate(_MD_TABLE)
    if "\n" in text or text.lstrip(" \t")[:1] in _LINE_MARKS:
        return _MD_LINE_START.sub(_md_line_start, text)
    return text


def _md_line_start(m: re.Match[str]) -> str:
    return m.group(1) + f"&#{ord(m.group(2))};"


def md_oneline(value: Any, length: int) -> str:
    """md(truncate(oneline(value), length)) in one call: for names and label values."""
    text = " ".join(str(value).split()) if value is not None else ""
    if len(text) > length:
        text = truncate(text, length)
    if _MD_SPECIAL.search(text):
        text = text.translate(_MD_TABLE)
    if text[:1] in _LINE_MARKS:  # one line, no leading blanks: only its start can be one
        text = f"&#{ord(text[0])};" + text[1:]
    return text


def plain(value: Any) -> str:
    """Text for text/post messages and plain_text: an <at …> tag mentions nobody."""
    if value is None:
        return ""
    text = str(value).replace("\r\n", "\n")
    return _AT_TAG.sub(r"＜\1", text) if "<" in text else text


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
    return encode_basestring(str(value))[1:-1]


# ---- URLs -----------------------------------------------------------------

_HTTP = re.compile(r"^https?://[^\s/?#]", re.IGNORECASE)
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # kept by safe_url as well; the rest is %-encoded


def _quoter(safe: str) -> tuple[re.Pattern[str], list[str]]:
    """(text quote() keeps as it is, byte → its quoted form) for urllib's quote(text, safe)."""
    keep = _UNRESERVED + safe
    table = [chr(b) if chr(b) in keep else f"%{b:02X}" for b in range(256)]
    return re.compile("[" + re.escape(keep) + "]*"), table


_URL_KEEP, _URL_TABLE = _quoter(_URL_SAFE)
_ALL_KEEP, _ALL_TABLE = _quoter("")


def _quote(text: str, keep: re.Pattern[str], table: list[str]) -> str:
    # quote() itself loops over the UTF-8 bytes in Python with a call per byte
    if keep.fullmatch(text):
        return text
    return "".join([table[b] for b in text.encode()])


def is_http_url(value: Any) -> bool:
    """An http(s) URL as it stands: no spaces or control characters to quote first."""
    return isinstance(value, str) and bool(_HTTP.match(value)) and safe_url(value) == value


def safe_url(value: Any) -> str:
    """An http(s) URL made safe to put in a card, or '' (Feishu needs http(s))."""
    return "" if value is None else _safe_url(str(value))


@lru_cache(maxsize=4096)  # alerts of a rule share their generator, runbook… URLs
def _safe_url(text: str) -> str:
    url = text.strip()
    if not _HTTP.match(url):
        return ""
    return _quote(url, _URL_KEEP, _URL_TABLE)


def md_url(value: Any) -> str:
    """safe_url for a markdown link target: brackets and parentheses encoded too."""
    url = safe_url(value)
    for char, code in (("(", "%28"), (")", "%29"), ("[", "%5B"), ("]", "%5D")):
        url = url.replace(char, code)
    return url


def base_url(external_url: str) -> str:
    """Alertmanager's external URL, safe and without a trailing slash; '' if unusable."""
    return safe_url(external_url).rstrip("/")


def matchers_text(labels: dict[str, str]) -> str:
    """Labels in Alertmanager's filter syntax: {alertname="X",job="y"}, alertname first."""
    inner = ",".join(f'{k}="{_matcher_value(labels[k])}"' for k in _matcher_keys(labels))
    return "{" + inner + "}"


def _matcher_keys(labels: dict[str, str]) -> list[str]:
    keys = sorted(labels)
    if "alertname" in labels:
        keys.remove("alertname")
        keys.insert(0, "alertname")
    return keys


def _matcher_value(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def silence_url(external_url: str, labels: dict[str, str]) -> str:
    """Alertmanager's new-silence form prefilled with these labels; '' without a base URL."""
    return silence_url_at(base_url(external_url), labels)


def silence_url_at(base: str, labels: dict[str, str]) -> str:
    """silence_url for a base already made by base_url (once per card, not per alert)."""
    if not base or not labels:
        return ""
    # quote(matchers_text(labels), safe=""), a label at a time: {k="v",…} → %7Bk%3D%22v%22%2C…
    matchers = "%2C".join([_quoted_matcher(k, labels[k]) for k in _matcher_keys(labels)])
    return f"{base}/#/silences/new?filter=%7B{matchers}%7D"


@lru_cache(maxsize=4096)  # alerts of a group share most of their labels
def _quoted_matcher(key: str, value: str) -> str:
    quoted = _quote(_matcher_value(value), _ALL_KEEP, _ALL_TABLE)
    return _quote(key, _ALL_KEEP, _ALL_TABLE) + "%3D%22" + quoted + "%22"


_REGEX_META = re.compile(r"([.^$*+?()\[\]{}|\\])")


def alertmanager_url(external_url: str, receiver: str, group_labels: dict[str, str]) -> str:
    """Alertmanager's alert list for this receiver (a regex there) and group."""
    base = base_url(external_url)
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


# What Alertmanager sends: UTC, "Z", up to 9 digits of fraction. fromisoformat
# reads it as parse_time does (fraction cut to microseconds), 4x as fast.
_GO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time: no time


# Alerts of a group share start times, and a notification is rendered for
# every target and language and again at each repeat: parse each string once.
@lru_cache(maxsize=2048)
def _parse_time(value: str) -> datetime | None:
    if not _GO_UTC.fullmatch(value):
        return parse_time(value)  # offsets, lower case, Go's zero time…
    try:
        when = datetime.fromisoformat(value)
    except ValueError:  # no such day or hour
        return None
    return None if when <= _ZERO_TIME else when


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return _parse_time(value) if isinstance(value, str) else None


def local_time(value: Any, tz: tzinfo) -> str:
    """'2026-11-28 21:46:21 CST' in tz; '' for '' or Go's zero time."""
    when = as_time(value)
    if when is None:
        return ""
    if when.tzinfo is UTC:  # parsed times are; other zones may have a fold to tell apart
        return _local_utc_time(when, tz)
    return _local_time(when, tz)


def _local_time(when: datetime, tz: tzinfo) -> str:
    local = when.astimezone(tz)
    name = local.tzname() or ""
    if not name.isalpha():  # zones without an abbreviation print "+04"
        offset = local.strftime("%z")
        name = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    if local.year < 1000:  # strftime does not pad such years; isoformat does
        return local.strftime("%Y-%m-%d %H:%M:%S ") + name
    return local.isoformat(" ", "seconds")[:19] + " " + name


# Alerts of a group often start at the same evaluation, and a card is
# rendered per target and language and again at each repeat.
_local_utc_time = lru_cache(maxsize=2048)(_local_time)


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
