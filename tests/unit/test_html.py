"""cards/html.py: Feishu messages as safe HTML."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime

import pytest

from amfeishu.cards.html import card_fragment, card_html, markdown_html
from amfeishu.cards.renderer import Renderer
from amfeishu.config.types import Target
from amfeishu.feishu.webhook import body_size, build_body
from amfeishu.models import parse_notification
from tests.conftest import SAMPLES

NOW = datetime(2026, 11, 28, 14, 10, tzinfo=UTC)


def rendered(sample: str, **target: object) -> dict:
    n = parse_notification(json.loads((SAMPLES / f"{sample}.json").read_text()))
    result = Renderer().render(n, Target("ops", **target), now=NOW)  # type: ignore[arg-type]
    assert result.error is None
    return result.message


@pytest.mark.parametrize(
    ("sample", "colour", "title"),
    [
        ("firing", "red", "[告警:1] HighCPU"),
        ("resolved", "green", "[已恢复] HighCPU"),
        ("cjk-hostile-firing", "red", "[告警:1] 磁盘空间不足"),
        ("group-mixed", "orange", "KubePodCrashLooping"),
    ],
)
def test_default_cards(sample: str, colour: str, title: str) -> None:
    message = rendered(sample)
    page = card_html(message, title="ops")
    assert f'class="fs-header fs-header-{colour}"' in page
    assert title in page
    for tag in message["card"]["header"]["text_tag_list"]:
        assert f'fs-tag-{tag["color"]}">{tag["text"]["content"]}</span>' in page
    buttons = re.findall(r'<a class="fs-btn fs-btn-\w+" href="([^"]+)"', page)
    urls = re.findall(r'"default_url": "([^"]+)"', json.dumps(message))
    assert buttons == [html.escape(u) for u in urls]
    assert len(buttons) >= 2


def test_page_is_self_contained_and_scriptless() -> None:
    message = rendered("firing", mentions={"critical": ("all",)})
    page = card_html(message, title="<b>ops</b>")
    assert page.startswith("<!doctype html>")
    assert "default-src 'none'" in page  # CSP: no scripts, nothing fetched
    assert "<script" not in page and "<link" not in page
    assert "&lt;b&gt;ops&lt;/b&gt;" in page
    assert '<span class="fs-at">@所有人</span>' in page
    assert "of 20 KB" in page


def test_size_counts_the_signed_body() -> None:
    message = rendered("many-alerts")
    assert body_size(message) == len(build_body(message, "x")) + 120


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '"><svg onload=alert(1)>',
        "<a href='javascript:alert(1)'>x</a>",
        "[x](javascript:alert(1))",
        "[x](  javascript:alert(1))",
        "<font color='red\" onmouseover=\"alert(1)'>x</font>",
        "<font color=expression(alert(1))>x</font>",
        "<at id='\"><script>alert(1)</script>'></at>",
        "<text_tag color='x\" onclick=\"alert(1)'>t</text_tag>",
        "\ue0000\ue001 <link url='data:text/html,<script>alert(1)</script>'>x</link>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;img src=x onerror=alert(1)&#62;",
        "`<script>`",
    ],
)
def test_hostile_markdown_is_escaped_and_not_linked(hostile: str) -> None:
    out = markdown_html(hostile)
    assert not re.search(r"<(script|img|svg|iframe)", out, re.I)
    assert 'href="javascript' not in out and 'href="data' not in out
    assert "\ue000" not in out and "\ue001" not in out
    for attrs in re.findall(r"<\w+([^>]*)>", out):  # every attribute is one we made
        pairs = re.findall(r'\s([\w-]+)="([^"]*)"', attrs)
        assert re.sub(r'\s[\w-]+="[^"]*"', "", attrs).strip() == "", attrs
        for name, value in pairs:
            assert name in {"class", "href", "target", "rel", "style", "title"}, attrs
            if name == "style":
                assert re.fullmatch(r"color:#[0-9a-fA-F]{3,8}", value), attrs


def test_hostile_card_fields() -> None:
    evil = "<script>alert(1)</script>"
    card = {
        "msg_type": "interactive",
        "card": {
            "schema": "2.0",
            "header": {
                "title": {"tag": "plain_text", "content": evil},
                "subtitle": {"tag": "plain_text", "content": evil},
                "text_tag_list": [
                    {
                        "tag": "text_tag",
                        "text": {"tag": "plain_text", "content": evil},
                        "color": '"x',
                    }
                ],
                "template": 'red" onclick="x',
            },
            "body": {
                "elements": [
                    {"tag": "div", "text": {"tag": "plain_text", "content": evil}},
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": evil},
                        "type": '"x',
                        "behaviors": [{"type": "open_url", "default_url": "javascript:alert(1)"}],
                    },
                    {"tag": "column_set", "columns": [{"tag": "column", "weight": "1;x"}]},
                    {"tag": evil},
                ]
            },
        },
    }
    out = card_fragment(card)
    assert "<script" not in out and "javascript:" not in out
    assert "fs-header-default" in out  # an unknown colour is not written into the page
    assert "fs-tag-blue" in out and "fs-btn-default fs-btn-nolink" in out
    assert out.count("&lt;script&gt;") == 6  # title, subtitle, tag, div, button, tag name


def test_markdown_subset() -> None:
    out = markdown_html(
        "**b** *i* ~~s~~ [docs](https://x.example/a?b=1&c=2)\n"
        "<font color='grey'>g</font> <font color=#ff0000>r</font>\n"
        "- one\n- two\n1. first\n"
        "<at id=all></at><at id=ou_abc></at> &#42;not bold&#42; `code`\n---\n"
        "# Heading\n> quoted"
    )
    assert "<strong>b</strong> <em>i</em> <del>s</del>" in out
    assert '<a class="fs-link" href="https://x.example/a?b=1&amp;c=2"' in out
    assert '<span class="fs-font" style="color:#8f959e">g</span>' in out
    assert 'style="color:#ff0000">r<' in out
    assert '<ul class="fs-list"><li>one</li><li>two</li></ul>' in out
    assert '<ol class="fs-list"><li>first</li></ol>' in out
    assert '@所有人</span><span class="fs-at">@ou_abc</span>' in out
    assert "*not bold*" in out and "<code>code</code>" in out
    assert '<hr class="fs-hr">' in out and "fs-h1" in out and "fs-quote" in out
    assert markdown_html("a\nb").count('class="fs-line"') == 2


def test_md_escaped_labels_show_literally() -> None:
    # what the | md filter makes of a hostile label: entities, shown as the characters
    message = rendered("quotes-markup")
    page = card_fragment(message)
    assert "**ns**" in page and "<strong>ns</strong>" not in page
    assert "&lt;at id=all&gt;&lt;/at&gt;" in page  # the pod label, not a mention
    assert page.count('class="fs-at">@所有人') == 0  # no mention config, no label can add one


def test_text_post_and_cardkit_messages() -> None:
    text = card_fragment(
        {"msg_type": "text", "content": {"text": 'a <b>\n<at user_id="all">所有人</at>'}}
    )
    assert "a &lt;b&gt;" in text and '<span class="fs-at">@所有人</span>' in text
    post = card_fragment(
        {
            "msg_type": "post",
            "content": {
                "post": {
                    "zh_cn": {
                        "title": "<t>",
                        "content": [
                            [
                                {"tag": "text", "text": "x<y"},
                                {"tag": "a", "text": "go", "href": "https://a.example/"},
                                {"tag": "a", "text": "bad", "href": "javascript:x"},
                                {"tag": "at", "user_id": "ou_1"},
                            ]
                        ],
                    }
                }
            },
        }
    )
    assert "&lt;t&gt;" in post and "x&lt;y" in post and 'href="https://a.example/"' in post
    assert "javascript" not in post and "@ou_1" in post
    kit = card_fragment(
        {
            "msg_type": "interactive",
            "card": {
                "type": "template",
                "data": {"template_id": "AAq1", "template_variable": {"title": "<b>HighCPU</b>"}},
            },
        }
    )
    assert "CardKit template AAq1" in kit and "&lt;b&gt;HighCPU&lt;/b&gt;" in kit


def test_i18n_content_by_locale() -> None:
    message = rendered("firing", language="auto")
    assert "[FIRING:1] HighCPU" in card_fragment(message, locale="en_us")
    assert "[告警:1] HighCPU" in card_fragment(message, locale="zh_cn")
