"""A Feishu message as HTML, drawn the way the Feishu client shows it, for previews.

Card content is untrusted (labels and annotations reach it): every string is
HTML-escaped before anything is made of it, and the only markup produced is
built here from validated values — http(s) links, known colours, @ chips.
The page itself carries a CSP that forbids scripts.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from amfeishu.cards.checks import HEADER_COLOURS
from amfeishu.feishu.webhook import MAX_BODY_BYTES, body_size

TAG_COLOURS = frozenset(
    ("neutral", "blue", "turquoise", "lime", "orange", "violet", "indigo", "wathet", "green",
     "yellow", "red", "purple", "carmine")
)  # fmt: skip
BUTTON_TYPES = frozenset(
    ("default", "primary", "danger", "text", "primary_text", "danger_text", "primary_filled",
     "danger_filled", "laser")
)  # fmt: skip
# <font color=…> names Feishu knows, as the client draws them
FONT_COLOURS = {
    "red": "#f54a45", "green": "#34c724", "grey": "#8f959e", "gray": "#8f959e",
    "blue": "#3370ff", "orange": "#ff8800", "yellow": "#dc9b04", "purple": "#7f3bf5",
    "violet": "#7f3bf5", "indigo": "#4954e6", "wathet": "#049fd7", "turquoise": "#04b49c",
    "carmine": "#d83931", "lime": "#8fac02", "default": "#1f2329",
}  # fmt: skip
_HEX = re.compile(r"^#[0-9a-fA-F]{3,8}$")
_HTTP = re.compile(r"^https?://[^\s/?#]", re.IGNORECASE)
_MAX_DEPTH = 12

# ---- markdown ----------------------------------------------------------------

_P0, _P1 = "\ue000", "\ue001"  # placeholder brackets; stripped from input first
_PLACEHOLDER = re.compile(f"{_P0}(\\d+){_P1}")
_ATTR = r"""\s*=\s*(?:"([^"<>]*)"|'([^'<>]*)'|([^\s"'<>]*))\s*"""
_AT = re.compile(r"<at\s+(id|ids|user_id|open_id|email)" + _ATTR + r"/?>(.*?)</at\s*>", re.I | re.S)
_FONT = re.compile(r"<font\s+color" + _ATTR + r">(.*?)</font\s*>", re.I | re.S)
_TEXT_TAG = re.compile(r"<text_tag(?:\s+color" + _ATTR + r")?>(.*?)</text_tag\s*>", re.I | re.S)
_ANCHOR = re.compile(r"<a\s+href" + _ATTR + r">(.*?)</a\s*>", re.I | re.S)
_LINK = re.compile(r"<link\s+url" + _ATTR + r"[^>]*>(.*?)</link\s*>", re.I | re.S)
_BR = re.compile(r"<br\s*/?>", re.I)
_HR_TAG = re.compile(r"<hr\s*/?>", re.I)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_CODE = re.compile(r"`([^`\n]+)`")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^()\s]*)\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)")
_AUTOLINK = re.compile(r"(?<![\w/])https?://[^\s<>\"'\ue000\ue001]+[^\s<>\"'.,;:!?)\ue000\ue001]")
_BOLD = re.compile(r"\*\*(?!\s)(.+?)(?<!\s)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?![\s*])(.+?)(?<![\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_RULE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^>\s?(.*)$")


class _Marks:
    """Finished HTML pieces, kept out of the text as placeholders while it is parsed."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, piece: str) -> str:
        self.items.append(piece)
        return f"{_P0}{len(self.items) - 1}{_P1}"

    def restore(self, text: str, depth: int = 0) -> str:
        if depth > 4:
            return _PLACEHOLDER.sub("", text)
        return _PLACEHOLDER.sub(lambda m: self.restore(self.items[int(m[1])], depth + 1), text)


def _attr(m: re.Match[str], first: int) -> str:
    """The value of an _ATTR whose three groups start at group number first."""
    return next((g for g in m.groups()[first - 1 : first + 2] if g is not None), "")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def http_url(value: Any) -> str:
    """value when it is an http(s) URL, else ''."""
    url = str(value or "").strip()
    return url if _HTTP.match(url) and not any(c.isspace() for c in url) else ""


def _a_open(url: str, css: str = "fs-link") -> str:
    href = html.escape(url, quote=True)
    return f'<a class="{css}" href="{href}" target="_blank" rel="noopener noreferrer">'


def _colour(name: str) -> str:
    name = name.strip().lower()
    return FONT_COLOURS.get(name) or (name if _HEX.match(name) else "")


def _chip(who: str, locale: str) -> str:
    if who == "all":
        who = "所有人" if locale == "zh_cn" else "All"
    return f'<span class="fs-at">@{html.escape(who)}</span>'


def _tags(text: str, marks: _Marks, locale: str) -> str:
    """Feishu's HTML-like tags become placeholders (or open/close pairs around raw text)."""

    def at(m: re.Match[str]) -> str:
        ids = [i for i in re.split(r"[\s,]+", _attr(m, 2)) if i]
        name = m.group(5).strip()
        if name and len(ids) == 1 and ids[0] != "all":
            return marks.add(_chip(name, locale))
        return "".join(marks.add(_chip(i, locale)) for i in ids)

    def font(m: re.Match[str]) -> str:
        colour = _colour(_attr(m, 1))
        style = f' style="color:{colour}"' if colour else ""
        return marks.add(f'<span class="fs-font"{style}>') + m.group(4) + marks.add("</span>")

    def text_tag(m: re.Match[str]) -> str:
        colour = _attr(m, 1).strip().lower()
        css = f"fs-tag fs-tag-{colour if colour in TAG_COLOURS else 'blue'}"
        return marks.add(f'<span class="{css}">') + m.group(4) + marks.add("</span>")

    def link(m: re.Match[str]) -> str:
        url = http_url(html.unescape(_attr(m, 1)))
        if not url:
            return marks.add('<span class="fs-badlink">') + m.group(4) + marks.add("</span>")
        return marks.add(_a_open(url)) + m.group(4) + marks.add("</a>")

    def entity(m: re.Match[str]) -> str:  # Feishu shows entities as their characters
        char = html.unescape(m.group()).replace(_P0, "").replace(_P1, "")
        return marks.add(html.escape(char)) if char != m.group() else m.group()

    text = _AT.sub(at, text)
    for _ in range(3):  # nested <font> inside <font>
        text = _FONT.sub(font, text)
    text = _TEXT_TAG.sub(text_tag, text)
    text = _LINK.sub(link, _ANCHOR.sub(link, text))
    text = _BR.sub(lambda m: marks.add("<br>"), text)
    text = _HR_TAG.sub(lambda m: marks.add('<hr class="fs-hr">'), text)
    return _ENTITY.sub(entity, text)


def _inline(raw: str, marks: _Marks) -> str:
    """One line of (placeholdered) markdown → HTML: escaped first, then emphasis and links."""
    raw = _CODE.sub(lambda m: marks.add(f"<code>{html.escape(m[1])}</code>"), raw)
    text = html.escape(raw, quote=False)

    def image(m: re.Match[str]) -> str:
        return marks.add(f'<span class="fs-img-inline">🖼 {m[1] or m[2]}</span>')

    def link(m: re.Match[str]) -> str:
        url = http_url(html.unescape(m[2]))
        if not url:
            title = html.escape(html.unescape(m[2]), quote=True)
            bad = f'<span class="fs-badlink" title="not an http(s) link: {title}">'
            return marks.add(bad) + m[1] + marks.add("</span>")
        return marks.add(_a_open(url)) + m[1] + marks.add("</a>")

    def autolink(m: re.Match[str]) -> str:
        url = html.unescape(m.group())
        return marks.add(_a_open(url) + html.escape(url) + "</a>")

    text = _MD_LINK.sub(link, _IMAGE.sub(image, text))
    text = _AUTOLINK.sub(autolink, text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _STRIKE.sub(r"<del>\1</del>", text)
    return _ITALIC.sub(r"<em>\1</em>", text)


def markdown_html(content: Any, locale: str = "zh_cn") -> str:
    """Feishu card markdown (the subset alert cards use) as safe HTML."""
    marks = _Marks()
    text = str(content or "").replace(_P0, "").replace(_P1, "")
    text = _tags(text.replace("\r\n", "\n").replace("\r", "\n"), marks, locale)
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            code = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(html.escape(lines[i]))
                i += 1
            out.append('<pre class="fs-code">' + "\n".join(code) + "</pre>")
        elif m := _HEADING.match(line):
            level = len(m[1])
            out.append(f'<div class="fs-heading fs-h{level}">{_inline(m[2], marks)}</div>')
        elif _RULE.match(line):
            out.append('<hr class="fs-hr">')
        elif _BULLET.match(line) or _NUMBERED.match(line):
            pattern = _BULLET if _BULLET.match(line) else _NUMBERED
            tag = "ul" if pattern is _BULLET else "ol"
            items = []
            while i < len(lines) and (m := pattern.match(lines[i])):
                items.append(f"<li>{_inline(m[1], marks)}</li>")
                i += 1
            out.append(f'<{tag} class="fs-list">{"".join(items)}</{tag}>')
            continue
        elif _QUOTE.match(line):
            quoted = []
            while i < len(lines) and (m := _QUOTE.match(lines[i])):
                quoted.append(_inline(m[1], marks))
                i += 1
            out.append('<blockquote class="fs-quote">' + "<br>".join(quoted) + "</blockquote>")
            continue
        else:
            out.append(f'<div class="fs-line">{_inline(line, marks) or "<br>"}</div>')
        i += 1
    return marks.restore("".join(out))


def plain_html(content: Any) -> str:
    return html.escape(str(content or "").replace(_P0, "").replace(_P1, ""))


# ---- cards -------------------------------------------------------------------


def _text(obj: Any, locale: str) -> str:
    """A text object ({tag: plain_text|lark_md, content, i18n_content}) as HTML."""
    if isinstance(obj, str):
        return plain_html(obj)
    if not isinstance(obj, dict):
        return ""
    i18n = obj.get("i18n_content") or obj.get("i18n") or {}
    content = (i18n.get(locale) if isinstance(i18n, dict) else None) or obj.get("content", "")
    if obj.get("tag") == "lark_md":
        return markdown_html(content, locale)
    return plain_html(content)


def _text_classes(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    css = []
    if obj.get("text_size") in ("notation", "normal", "heading"):
        css.append(f"fs-size-{obj['text_size']}")
    if obj.get("text_color") in FONT_COLOURS:
        css.append(f"fs-colour-{obj['text_color']}")
    return " ".join(css)


def _button(el: dict[str, Any], locale: str) -> str:
    kind = el.get("type") if el.get("type") in BUTTON_TYPES else "default"
    css = f"fs-btn fs-btn-{kind}"
    label = _text(el.get("text"), locale) or "&nbsp;"
    url, calls_back = "", False
    for b in el.get("behaviors") or ():
        if isinstance(b, dict) and b.get("type") == "open_url":
            url = http_url(b.get("default_url") or b.get("pc_url"))
        calls_back = calls_back or (isinstance(b, dict) and b.get("type") == "callback")
    multi = el.get("multi_url")
    url = url or http_url(el.get("url") or (multi.get("url") if isinstance(multi, dict) else ""))
    if not url and calls_back:  # an app card's button: Feishu calls amfeishu back
        return f'<span class="{css} fs-btn-callback" title="calls back to amfeishu">{label}</span>'
    if not url:
        return f'<span class="{css} fs-btn-nolink" title="no http(s) URL">{label}</span>'
    return _a_open(url, css) + label + "</a>"


def _column(col: Any, locale: str, depth: int) -> str:
    if not isinstance(col, dict):
        return ""
    style = "flex: 0 0 auto"
    if col.get("width") == "weighted" or col.get("weight"):
        given = col.get("weight")
        weight = given if isinstance(given, int) else 1
        style = f"flex: {max(1, min(weight, 5))} 1 0"
    inner = _elements(col.get("elements"), locale, depth + 1)
    return f'<div class="fs-col" style="{style}">{inner}</div>'


def _element(el: Any, locale: str, depth: int) -> str:
    if not isinstance(el, dict) or depth > _MAX_DEPTH:
        return ""
    tag = el.get("tag")
    if tag == "markdown":
        return f'<div class="fs-md">{markdown_html(el.get("content"), locale)}</div>'
    if tag == "div":
        css = _text_classes(el.get("text"))
        parts = [f'<div class="fs-text {css}">{_text(el.get("text"), locale)}</div>']
        fields = [f for f in el.get("fields") or () if isinstance(f, dict)]
        if fields:
            cells = "".join(
                f'<div class="fs-field{" fs-short" if f.get("is_short") else ""}">'
                f"{_text(f.get('text'), locale)}</div>"
                for f in fields
            )
            parts.append(f'<div class="fs-fields">{cells}</div>')
        return f'<div class="fs-div">{"".join(parts)}</div>'
    if tag == "hr":
        return '<hr class="fs-hr">'
    if tag == "column_set":
        mode = el.get("flex_mode") if el.get("flex_mode") in ("none", "flow", "bisect") else "none"
        cols = "".join(_column(c, locale, depth) for c in el.get("columns") or ())
        return f'<div class="fs-cols fs-flex-{mode}">{cols}</div>'
    if tag == "button":
        return _button(el, locale)
    if tag == "action":  # JSON 1.0
        buttons = "".join(_element(a, locale, depth + 1) for a in el.get("actions") or ())
        return f'<div class="fs-cols fs-flex-flow">{buttons}</div>'
    if tag == "note":  # JSON 1.0
        notes = "".join(_text(e, locale) for e in el.get("elements") or ())
        return f'<div class="fs-text fs-size-notation fs-colour-grey">{notes}</div>'
    if tag == "img":
        alt = _text(el.get("alt"), locale) or plain_html(el.get("img_key", "image"))
        return f'<div class="fs-img">🖼 {alt}</div>'
    if tag == "collapsible_panel":
        head = _mapping(el.get("header"))
        inner = _elements(el.get("elements"), locale, depth + 1)
        summary = _text(head.get("title"), locale)
        return f'<details class="fs-panel"><summary>{summary}</summary>{inner}</details>'
    what = plain_html(tag if isinstance(tag, str) else "?")
    return f'<div class="fs-unsupported">[{what}] not shown in the preview</div>'


def _elements(items: Any, locale: str, depth: int = 0) -> str:
    if not isinstance(items, list):
        return ""
    return "".join(_element(el, locale, depth) for el in items)


def _header(header: Any, locale: str) -> str:
    if not isinstance(header, dict):
        return ""
    colour = header.get("template") if header.get("template") in HEADER_COLOURS else "default"
    title = _text(header.get("title"), locale)
    subtitle = _text(header.get("subtitle"), locale)
    tags = []
    for tag in (header.get("text_tag_list") or ())[:3]:  # Feishu shows at most 3
        if isinstance(tag, dict):
            tc = tag.get("color") if tag.get("color") in TAG_COLOURS else "blue"
            tags.append(f'<span class="fs-tag fs-tag-{tc}">{_text(tag.get("text"), locale)}</span>')
    parts = [f'<div class="fs-title">{title}{"".join(tags)}</div>']
    if subtitle:
        parts.append(f'<div class="fs-subtitle">{subtitle}</div>')
    return f'<div class="fs-header fs-header-{colour}">{"".join(parts)}</div>'


def _cardkit(data: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{plain_html(k)}</th><td>{plain_html(v if isinstance(v, str) else json.dumps(v))}"
        "</td></tr>"
        for k, v in (data.get("template_variable") or {}).items()
    )
    version = data.get("template_version_name") or "latest"
    return (
        '<div class="fs-card fs-cardkit"><div class="fs-header fs-header-grey">'
        '<div class="fs-title">'
        f"CardKit template {plain_html(data.get('template_id'))}"
        f'<span class="fs-tag fs-tag-neutral">{plain_html(version)}</span></div>'
        '<div class="fs-subtitle">Feishu fills this published template with the variables below'
        f'</div></div><div class="fs-body"><table class="fs-vars">{rows}</table></div></div>'
    )


def _text_message(text: Any, locale: str) -> str:
    marks = _Marks()
    raw = str(text or "").replace(_P0, "").replace(_P1, "")
    raw = _AT.sub(lambda m: marks.add(_chip(m[5].strip() or _attr(m, 2), locale)), raw)
    return f'<div class="fs-bubble">{marks.restore(html.escape(raw))}</div>'


def _post_item(item: Any, locale: str) -> str:
    if not isinstance(item, dict):
        return ""
    tag = item.get("tag")
    if tag == "a":
        url = http_url(item.get("href"))
        label = plain_html(item.get("text"))
        return _a_open(url) + label + "</a>" if url else f'<span class="fs-badlink">{label}</span>'
    if tag == "at":
        return _chip(str(item.get("user_name") or item.get("user_id") or "?"), locale)
    if tag == "img":
        return '<span class="fs-img-inline">🖼 image</span>'
    if tag == "emotion":
        return plain_html(f":{item.get('emoji_type', '')}:")
    if tag == "md":
        return markdown_html(item.get("text"), locale)
    return plain_html(item.get("text", ""))


def _post_message(post: Any, locale: str) -> str:
    if not isinstance(post, dict) or not post:
        return '<div class="fs-bubble">(empty post)</div>'
    body = post.get(locale) or next(iter(post.values()))
    if not isinstance(body, dict):
        return '<div class="fs-bubble">(malformed post)</div>'
    paragraphs = "".join(
        '<div class="fs-line">' + "".join(_post_item(i, locale) for i in p) + "</div>"
        for p in body.get("content") or ()
        if isinstance(p, list)
    )
    title = f'<div class="fs-post-title">{plain_html(body.get("title"))}</div>'
    return f'<div class="fs-bubble fs-post">{title}{paragraphs}</div>'


def card_fragment(message: Any, *, locale: str = "zh_cn") -> str:
    """The message alone as HTML (no page around it): what the playground shows."""
    if not isinstance(message, dict):
        return '<div class="fs-unsupported">not a message</div>'
    kind = message.get("msg_type")
    content = _mapping(message.get("content"))
    if kind == "text":
        return _text_message(content.get("text"), locale)
    if kind == "post":
        return _post_message(content.get("post"), locale)
    card = message.get("card")
    if kind != "interactive" or not isinstance(card, dict):
        return f'<div class="fs-unsupported">msg_type {plain_html(kind)} not shown</div>'
    if card.get("type") == "template" and isinstance(card.get("data"), dict):
        return _cardkit(card["data"])
    body = _mapping(card.get("body"))
    elements = body.get("elements", card.get("elements"))  # 2.0, else 1.0
    return (
        f'<div class="fs-card">{_header(card.get("header"), locale)}'
        f'<div class="fs-body">{_elements(elements, locale)}</div></div>'
    )


def _size_html(size: int) -> str:
    over = size > MAX_BODY_BYTES
    css = "fs-size fs-size-over" if over else "fs-size"
    verdict = "over Feishu's limit" if over else "within Feishu's limit"
    return (
        f'<div class="{css}">{size / 1000:.1f} KB of {MAX_BODY_BYTES // 1000} KB '
        f"({100 * size / MAX_BODY_BYTES:.0f}%) — {verdict}</div>"
    )


def stylesheet() -> str:
    try:
        return resources.files("amfeishu.static").joinpath("card.css").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).parent / "static" / "card.css").read_text("utf-8")


def card_html(message: Any, *, title: str = "", locale: str = "zh_cn") -> str:
    """A self-contained page (no scripts, no external resources) showing the message."""
    size = body_size(message)
    raw = html.escape(json.dumps(message, ensure_ascii=False, indent=2))
    heading = html.escape(title or "amfeishu card preview")
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        "<!doctype html>\n"
        f'<html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{heading}</title><style>{stylesheet()}</style></head>"
        f'<body class="fs-page"><h1 class="fs-page-title">{heading}</h1>'
        f'<div class="fs-chat">{card_fragment(message, locale=locale)}</div>{_size_html(size)}'
        f"<details><summary>JSON</summary><pre class='fs-json'>{raw}</pre></details>"
        "</body></html>\n"
    )
