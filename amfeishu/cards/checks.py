"""Is this a message Feishu accepts from a custom bot; the i18n merge and keyword fix-ups.

Card JSON 2.0: https://open.feishu.cn/document/feishu-cards/card-json-v2-structure
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from amfeishu.cards.text import is_http_url

# Header colours of card JSON 2.0, exactly
# (https://open.feishu.cn/document/feishu-cards/card-json-v2-components/content-components/title).
HEADER_COLOURS = frozenset(
    ("blue", "wathet", "turquoise", "green", "yellow", "orange", "red", "carmine", "violet",
     "purple", "indigo", "grey", "default")
)  # fmt: skip
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
