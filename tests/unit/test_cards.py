"""Card templates: goldens, escaping, fallbacks, overrides, mentions, check().

Golden cards live in tests/golden/*.json. After an intended change of the
built-in templates, rewrite them with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_templating.py

and review the diff like code.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2 import DictLoader

from amfeishu.cards import checks as h
from amfeishu.cards import text as ct
from amfeishu.cards.jinja import environment
from amfeishu.cards.renderer import SAFE, Rendered, Renderer, RenderError
from amfeishu.cards.sets import CARD_FILES
from amfeishu.config.types import Target
from amfeishu.models import Notification, parse_notification
from tests.conftest import ROOT, SAMPLES

GOLDEN = ROOT / "tests" / "golden"
NOW = datetime(2026, 11, 28, 14, 10, tzinfo=UTC)
SAMPLE_NAMES = sorted(p.stem for p in SAMPLES.glob("*.json"))
RENDERER = Renderer()


def raw(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text("utf-8"))


def sample(name: str) -> Notification:
    return parse_notification(raw(name))


def with_severity(name: str, severity: str | None) -> Notification:
    data = raw(name)
    for labels in [data["commonLabels"], *(a["labels"] for a in data["alerts"])]:
        labels.pop("severity", None)
        if severity is not None:
            labels["severity"] = severity
    return parse_notification(data)


def walk(node: Any) -> list[dict[str, Any]]:
    """Every object in a message, depth first."""
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += walk(value)
    elif isinstance(node, list):
        for value in node:
            found += walk(value)
    return found


def markdowns(message: dict[str, Any]) -> list[str]:
    return [o["content"] for o in walk(message) if o.get("tag") == "markdown"]


def plain_texts(message: dict[str, Any]) -> list[str]:
    return [o["content"] for o in walk(message) if o.get("tag") == "plain_text"]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {
        o["text"]["content"]: o["behaviors"][0]["default_url"]
        for o in walk(message)
        if o.get("tag") == "button"
    }


def user_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return tmp_path


def ok(rendered: Rendered) -> dict[str, Any]:
    assert rendered.error is None, rendered.error
    assert h.card_problem(rendered.message) is None
    return rendered.message


# ---- goldens -------------------------------------------------------------------

GOLDEN_CASES = {
    "firing-critical": lambda: sample("firing"),
    "firing-warning": lambda: sample("group-firing"),
    "firing-info": lambda: with_severity("firing", "info"),
    "resolved": lambda: sample("resolved"),
    "mixed": lambda: sample("group-mixed"),
    "cjk-hostile": lambda: sample("cjk-hostile-firing"),
}


def check_golden(name: str, message: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(message, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
    assert json.loads(path.read_text("utf-8")) == message, f"{path} differs"


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_default_cards_match_goldens(case: str, language: str) -> None:
    target = Target(name="ops", language=language, mentions={"critical": ("all",)})
    message = ok(RENDERER.render(GOLDEN_CASES[case](), target, now=NOW))
    check_golden(f"default-{language}-{case}", message)


@pytest.mark.parametrize(
    ("name", "target", "sample_name", "kwargs"),
    [
        ("compact-zh-many", Target(name="ops"), "many-alerts", {"compact": True, "omitted": 5}),
        ("auto-mixed", Target(name="ops", language="auto"), "group-mixed", {}),
        ("text-zh-mixed", Target(name="ops", msg_type="text", keyword="告警"), "group-mixed", {}),
        (
            "post-auto-mixed",
            Target(name="ops", msg_type="post", language="auto"),
            "group-mixed",
            {},
        ),
        (
            "cardkit-en-firing",
            Target(
                name="ops", language="en", card_template_id="AAqk", card_template_version="1.0.0"
            ),
            "group-firing",
            {},
        ),
    ],
)
def test_other_messages_match_goldens(
    name: str, target: Target, sample_name: str, kwargs: dict[str, Any]
) -> None:
    check_golden(name, ok(RENDERER.render(sample(sample_name), target, now=NOW, **kwargs)))


# ---- every output is a valid message ---------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_NAMES)
@pytest.mark.parametrize("language", ["zh", "en", "auto"])
@pytest.mark.parametrize("msg_type", ["interactive", "text", "post", "cardkit"])
def test_every_sample_renders_a_valid_message(name: str, language: str, msg_type: str) -> None:
    cardkit = {"card_template_id": "AAqk"} if msg_type == "cardkit" else {}
    kind = "interactive" if cardkit else msg_type
    target = Target(name="ops", language=language, msg_type=kind, **cardkit)
    for compact in (False, True):
        message = ok(RENDERER.render(sample(name), target, compact=compact, omitted=2, now=NOW))
        assert message["msg_type"] == kind
        assert json.loads(json.dumps(message, ensure_ascii=False)) == message
        assert h.card_problem(RENDERER.safe_message(sample(name), target, reason="x")) is None


def test_auto_language_adds_en_us_to_title_and_markdown() -> None:
    message = ok(RENDERER.render(sample("group-mixed"), Target(name="ops", language="auto")))
    title = message["card"]["header"]["title"]
    assert title["content"].startswith("[告警:2]")
    assert title["i18n_content"] == {
        "zh_cn": "[告警:2] KubePodCrashLooping",
        "en_us": "[FIRING:2] KubePodCrashLooping",
    }
    localized = [o for o in walk(message) if o.get("tag") == "markdown" and "i18n_content" in o]
    assert any("Started" in o["i18n_content"]["en_us"] for o in localized)
    assert all(o["i18n_content"]["zh_cn"] == o["content"] for o in localized)
    tags = message["card"]["header"]["text_tag_list"]
    assert tags[0]["text"]["i18n_content"] == {"zh_cn": "警告", "en_us": "warning"}


# ---- escaping and mentions -------------------------------------------------------


def test_hostile_annotations_cannot_mention_or_format() -> None:
    n = sample("cjk-hostile-firing")
    message = ok(RENDERER.render(n, Target(name="ops"), now=NOW))
    text = json.dumps(message, ensure_ascii=False)
    assert "<at" not in text
    for content in markdowns(message):
        assert "**bold**" not in content and "[link](" not in content
    assert "&lt;at id=all&gt;&lt;/at&gt;" in "".join(markdowns(message))
    # quotes, backslash and newline come back exactly from a plain_text field
    description = n.alerts[0].annotations["description"]
    assert description in plain_texts(message)


def test_only_configured_mentions_appear() -> None:
    target = Target(name="ops", mentions={"critical": ("ou_oncall",)})
    message = ok(RENDERER.render(sample("cjk-hostile-firing"), target, now=NOW))
    assert json.dumps(message, ensure_ascii=False).count("<at") == 1
    assert markdowns(message)[0] == "<at id=ou_oncall></at>"


def test_quotes_markup_sample_is_neutralised_everywhere() -> None:
    n = sample("quotes-markup")
    for msg_type in ("interactive", "text", "post"):
        target = Target(name="ops", msg_type=msg_type, mention_label="", language="auto")
        message = ok(RENDERER.render(n, target, now=NOW))
        text = json.dumps(message, ensure_ascii=False)
        assert "<at" not in text, msg_type
        assert "javascript:" not in json.dumps(buttons(message)), msg_type
    card = RENDERER.render(n, Target(name="ops", mention_label=""), now=NOW).message
    assert card["card"]["header"]["title"]["content"] == '[告警:1] Quote"Break\\Alert'
    # no button for the ftp runbook nor the javascript: source
    assert set(buttons(card)) == {"监控面板", "静默", "Alertmanager"}


def test_mentions_from_config_and_label_are_validated_and_deduplicated() -> None:
    data = raw("firing")
    data["alerts"][0]["labels"]["feishu_mention"] = "ou_b, ou_a ou_c<at id=all>;all，ou_d"
    data["alerts"][0]["annotations"]["feishu_mention"] = "ou_b ou_e"
    n = parse_notification(data)
    target = Target(name="ops", mentions={"critical": ("all", "ou_a", "bogus", "ou_a", "ou_x y")})
    message = ok(RENDERER.render(n, target, now=NOW))
    expected = ["all", "ou_a", "ou_b", "ou_d", "ou_e"]
    assert markdowns(message)[0] == " ".join(f"<at id={i}></at>" for i in expected)
    text = ok(RENDERER.render(n, Target(name="t", msg_type="text", mentions=target.mentions)))
    assert '<at user_id="all">所有人</at> <at user_id="ou_a"></at>' in text["content"]["text"]


def test_resolved_mentions_come_from_resolved_key_only() -> None:
    data = raw("resolved")
    data["alerts"][0]["labels"]["feishu_mention"] = "ou_owner"
    target = Target(name="ops", mentions={"critical": ("all",), "resolved": ("ou_rec",)})
    message = ok(RENDERER.render(parse_notification(data), target, now=NOW))
    assert markdowns(message)[0] == "<at id=ou_rec></at>"
    assert "ou_owner" not in markdowns(message)[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<at id=all></at>", "&lt;at id=all&gt;&lt;/at&gt;"),
        ("**b** _i_ ~~s~~", "&#42;&#42;b&#42;&#42; &#95;i&#95; &#126;&#126;s&#126;&#126;"),
        ("[t](http://x)", "&#91;t&#93;&#40;http://x&#41;"),
        ("# h\n- item\n  + x\n===", "&#35; h\n&#45; item\n  &#43; x\n&#61;=="),
        ("a\\`b` | c & d", "a&#92;&#96;b&#96; &#124; c &amp; d"),
        ("CPU 95% 磁盘 🚨", "CPU 95% 磁盘 🚨"),
        (None, ""),
    ],
)
def test_md_neutralises_markdown(value: Any, expected: str) -> None:
    assert ct.md(value) == expected


def test_finalize_escapes_once_and_json_filter_passes_through(tmp_path: Path) -> None:
    template = (
        '{% set block %}"{{ alertname }}"{% endset %}'
        '{"msg_type": "text", "content": {"text": "{{ "a<b&\'c" }}|'
        "{{ alerts[0].annotations.description }}|{{ alerts[0].annotations.description | e }}|"
        '{{ none }}|{{ alerts | length }}"}, "raw": {{ {"k": "<v>\\"", "n": [1, true]} | json }},'
        ' "block": {{ block }}}'
    )
    renderer = Renderer(user_dir(tmp_path, {"default/firing-critical.json.j2": template}))
    n = sample("cjk-hostile-firing")
    message = ok(renderer.render(n, Target(name="ops")))
    description = n.alerts[0].annotations["description"]
    assert message["content"]["text"] == f"a<b&'c|{description}|{description}||1"
    assert message["raw"] == {"k": '<v>"', "n": [1, True]}
    assert message["block"] == "磁盘空间不足"


@pytest.mark.parametrize("sandboxed", [False, True])
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ "a<b&\'c\\"" }}', "a<b&'c\\\""),  # a constant: JSON-escaped, never HTML-escaped
        ('{{ 1 }}{{ 1.5 }}{{ none }}{{ true }}|{{ "<" ~ ">" }}', "11.5True|<>"),
        ("{{ x }}|{{ x | e }}|{{ x | json }}", '<\\"q\\">|<\\"q\\">|"<\\"q\\">"'),
        ('{% macro m(a) %}"{{ a }}<"{% endmacro %}{{ m(x) }}|{{ m("<") }}', '"<\\"q\\"><"|"<<"'),
        ("{% set b %}<{{ x }}>{% endset %}{{ b }}", '<<\\"q\\">>'),
        (
            "{% macro m(c) %}[{{ caller() }}]{% endmacro %}{% call m(1) %}{{ x }}{% endcall %}",
            '[<\\"q\\">]',
        ),
        ('{% autoescape false %}{{ "<" }}{{ x }}{% endautoescape %}', '<<\\"q\\">'),
        ('{% for i in range(2) %}{{ i }}{{ "\\n" }}{% endfor %}', "0\\n1\\n"),
        ("{{ x | safe }}", '<"q">'),
    ],
)
def test_every_printed_value_is_json_escaped_exactly_once(
    template: str, expected: str, sandboxed: bool
) -> None:
    env = environment(DictLoader({"t": template}), sandboxed=sandboxed)
    assert env.get_template("t").render(x='<"q">') == expected


# ---- selection and colours ---------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "file", "colour", "tag"),
    [
        ("critical", "firing-critical.json.j2", "red", ("严重", "red")),
        ("warning", "firing-warning.json.j2", "orange", ("警告", "orange")),
        ("info", "firing-info.json.j2", "blue", ("提示", "blue")),
        ("CRITICAL", "firing-critical.json.j2", "red", ("严重", "red")),
        ("page", "default.json.j2", "grey", ("page", "neutral")),
        (None, "default.json.j2", "grey", ("未知", "neutral")),
    ],
)
def test_header_colour_by_severity(
    severity: str | None, file: str, colour: str, tag: tuple[str, str]
) -> None:
    rendered = RENDERER.render(with_severity("firing", severity), Target(name="ops"), now=NOW)
    message = ok(rendered)
    assert rendered.template == f"default/{file}"
    header = message["card"]["header"]
    assert header["template"] == colour
    first_tag = header["text_tag_list"][0]
    assert (first_tag["text"]["content"], first_tag["color"]) == tag


def test_resolved_card_is_green_with_end_time_and_duration() -> None:
    rendered = RENDERER.render(sample("resolved"), Target(name="ops", language="en"), now=NOW)
    message = ok(rendered)
    assert rendered.template == "default/resolved.json.j2"
    assert message["card"]["header"]["template"] == "green"
    assert message["card"]["header"]["title"]["content"] == "[RESOLVED] HighCPU"
    assert "Ended 2026-11-28 21:47:27 CST · lasted 1m" in markdowns(message)[0]


def test_mixed_notification_shows_firing_and_resolved_apart() -> None:
    message = ok(RENDERER.render(sample("group-mixed"), Target(name="ops", language="en")))
    contents = markdowns(message)
    firing_at = contents.index("**🔥 Firing (2)**")
    resolved_at = contents.index("**✅ Resolved (1)**")
    assert firing_at < resolved_at
    assert all("Started" in c for c in contents[firing_at + 1 : resolved_at])
    assert "Ended" in contents[resolved_at + 1]


def test_buttons_only_for_http_urls() -> None:
    firing = ok(RENDERER.render(sample("firing"), Target(name="ops", language="en"), now=NOW))
    assert set(buttons(firing)) == {"Source", "Silence", "Alertmanager"}
    assert buttons(firing)["Silence"] == (
        "http://vm:19093/#/silences/new?filter="
        "%7Balertname%3D%22HighCPU%22%2Cinstance%3D%22node1%3A9100%22%2Cjob%3D%22node%22"
        "%2Cseverity%3D%22critical%22%7D"
    )
    hostile = ok(RENDERER.render(sample("cjk-hostile-firing"), Target(name="ops", language="en")))
    assert "Source" not in buttons(hostile)  # generatorURL is ""
    assert buttons(hostile)["Dashboard"] == "https://grafana.example/d/disk"
    for message in (firing, hostile):
        assert all(url.startswith(("http://", "https://")) for url in buttons(message).values())


def test_no_alertmanager_links_without_external_url() -> None:
    data = raw("firing")
    data["externalURL"] = ""
    data["alerts"][0]["generatorURL"] = ""
    message = ok(RENDERER.render(parse_notification(data), Target(name="ops"), now=NOW))
    assert buttons(message) == {}
    assert not any(o.get("tag") == "column_set" for o in walk(message))


def test_truncated_alerts_shown() -> None:
    message = ok(RENDERER.render(sample("many-alerts"), Target(name="ops", language="en")))
    assert "<font color='grey'>12 alerts truncated by Alertmanager</font>" in markdowns(message)


# ---- compact, omitted, size ------------------------------------------------------


def test_compact_has_one_line_per_alert_and_omitted_links_to_alertmanager() -> None:
    n = sample("many-alerts")
    target = Target(name="ops", language="en")
    full = ok(RENDERER.render(n, target, now=NOW))
    compact = ok(RENDERER.render(n, target, compact=True, omitted=5, now=NOW))
    lines = next(c for c in markdowns(compact) if c.startswith("- ")).split("\n")
    assert len(lines) == 40
    assert lines[0] == "- **InstanceDown** · host-00:9100 · 59m"
    assert (
        "[5 more in Alertmanager](http://alertmanager.example:9093/#/alerts?receiver=ops"
        "&filter=%7Balertname%3D%22InstanceDown%22%2Ccluster%3D%22prod-sh%22%7D)"
    ) in markdowns(compact)
    size = len(json.dumps(compact, ensure_ascii=False).encode())
    assert size < 8_000 < len(json.dumps(full, ensure_ascii=False).encode())


def test_omitted_without_external_url_is_plain_text() -> None:
    data = raw("firing")
    data["externalURL"] = "not a url"
    message = ok(RENDERER.render(parse_notification(data), Target(name="ops"), omitted=3))
    assert "另有 3 条告警，请在 Alertmanager 查看" in markdowns(message)


# ---- text, post, cardkit -----------------------------------------------------------


@pytest.mark.parametrize("name", ["firing", "resolved", "group-mixed"])
@pytest.mark.parametrize("msg_type", ["text", "post", "interactive"])
def test_keyword_in_every_message(name: str, msg_type: str) -> None:
    target = Target(name="ops", msg_type=msg_type, keyword="PROD-ALERT", language="auto")
    message = ok(RENDERER.render(sample(name), target, now=NOW))
    if msg_type == "text":
        assert message["content"]["text"].startswith("PROD-ALERT [")
    elif msg_type == "post":
        assert all(
            b["title"].startswith("PROD-ALERT [") for b in message["content"]["post"].values()
        )
    else:
        title = message["card"]["header"]["title"]
        assert title["content"].startswith("PROD-ALERT [")
        assert title["i18n_content"]["en_us"].startswith("PROD-ALERT [")
    safe = RENDERER.safe_message(sample(name), target)
    assert "PROD-ALERT" in json.dumps(safe, ensure_ascii=False)


def test_keyword_is_added_when_a_user_template_forgets_it(tmp_path: Path) -> None:
    template = '{"msg_type": "text", "content": {"text": "{{ alertname }}"}}'
    renderer = Renderer(user_dir(tmp_path, {"default/text.json.j2": template}))
    message = ok(renderer.render(sample("firing"), Target(name="t", msg_type="text", keyword="kw")))
    assert message["content"]["text"] == "kw HighCPU"


def test_text_message() -> None:
    target = Target(name="ops", msg_type="text", language="en")
    message = ok(RENDERER.render(sample("group-mixed"), target, now=NOW))
    assert message["msg_type"] == "text"
    lines = message["content"]["text"].split("\n")
    assert lines[0] == "[FIRING:2] KubePodCrashLooping"
    assert (
        "• KubePodCrashLooping · pod=api-1 · Pod payments/api-1 is crash looping (for 12m)" in lines
    )
    assert "✅ Resolved (1)" in lines


def test_post_message_has_both_languages_for_auto() -> None:
    target = Target(name="ops", msg_type="post", language="auto")
    message = ok(RENDERER.render(sample("group-firing"), target, now=NOW))
    post = message["content"]["post"]
    assert post["zh_cn"]["title"] == "[告警:3] KubePodCrashLooping"
    assert post["en_us"]["title"] == "[FIRING:3] KubePodCrashLooping"
    links = [node for node in walk(post["en_us"]) if node.get("tag") == "a"]
    assert {"Runbook", "Silence", "Alertmanager"} <= {node["text"] for node in links}


def test_cardkit_message() -> None:
    target = Target(name="ops", card_template_id="AAqk", card_template_version="2.1.0")
    rendered = RENDERER.render(sample("cjk-hostile-firing"), target, now=NOW)
    message = ok(rendered)
    assert rendered.template == "default/cardkit.json.j2"
    data = message["card"]["data"]
    assert message["card"]["type"] == "template"
    assert (data["template_id"], data["template_version_name"]) == ("AAqk", "2.1.0")
    variables = data["template_variable"]
    assert set(variables) >= {
        "alertname", "status", "severity", "summary", "description", "alert_count",
        "firing_count", "resolved_count", "alertmanager_url", "silence_url", "runbook_url",
        "dashboard_url", "source_url", "labels_text", "starts_at",
    }  # fmt: skip
    assert variables["alert_count"] == 1 and variables["severity"] == "critical"
    assert "<at" not in variables["summary"]
    assert variables["dashboard_url"] == "https://grafana.example/d/disk"
    unversioned = ok(RENDERER.render(sample("firing"), Target(name="ops", card_template_id="A")))
    assert "template_version_name" not in unversioned["card"]["data"]


# ---- failures fall back to the safe card --------------------------------------------

BROKEN = {
    "syntax": ('{"msg_type": "interactive",\n  "card": {{ alertname }\n}', ":2: unexpected '}'"),
    "undefined": ('{\n"msg_type": "{{ no_such_name }}"}', ":2: 'no_such_name' is undefined"),
    "not json": ("hello {{ status }}", ": output is not JSON: Expecting value"),
    "one zero": (
        '{"msg_type": "interactive", "card": {"elements": [{"tag": "note"}]}}',
        ': card.schema: must be "2.0"',
    ),
    "colour": (
        '{"msg_type": "interactive", "card": {"schema": "2.0", "header": {"template": "gray",'
        ' "title": {"tag": "plain_text", "content": "x"}}, "body": {"elements": []}}}',
        ": card.header.template: must be a Feishu header colour, got 'gray'",
    ),
    "empty url": (
        '{"msg_type": "interactive", "card": {"schema": "2.0", "header": {"template": "red",'
        ' "title": {"tag": "plain_text", "content": "x"}}, "body": {"elements": [{"tag": "button",'
        ' "behaviors": [{"type": "open_url", "default_url": ""}]}]}}}',
        ": card.body.elements[0].behaviors[0].default_url: must be an http(s) URL",
    ),
    "content": ('{"msg_type": "interactive", "content": {}}', "carries its card in 'card'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_template_falls_back_to_safe_card(tmp_path: Path, case: str) -> None:
    source, problem = BROKEN[case]
    directory = user_dir(tmp_path, {"default/firing-critical.json.j2": source})
    rendered = Renderer(directory).render(sample("group-mixed"), Target(name="ops"))
    assert rendered.template == "default/firing-warning.json.j2"  # other files unaffected
    rendered = Renderer(directory).render(sample("firing"), Target(name="ops"), now=NOW)
    assert rendered.template == SAFE
    assert rendered.error is not None
    assert rendered.error.startswith(str(directory / "default" / "firing-critical.json.j2"))
    assert problem in rendered.error
    message = rendered.message
    assert h.card_problem(message) is None
    assert message["card"]["header"]["title"]["content"] == "[告警:1] HighCPU"
    assert message["card"]["header"]["template"] == "red"
    assert "**HighCPU** · 严重 · test summary" in markdowns(message)[0]
    assert plain_texts(message)[-1] == "amfeishu · ops · 简化卡片，原因见 amfeishu 日志"


def test_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    directory = user_dir(
        tmp_path,
        {
            "mine/_parts.j2": "{% macro oops() %}\n\n{{ 1 / 0 }}{% endmacro %}",
            "mine/default.json.j2": '{% import "_parts.j2" as p %}{"msg_type": "{{ p.oops() }}"}',
        },
    )
    rendered = Renderer(directory).render(sample("firing"), Target(name="ops", template="mine"))
    assert rendered.template == SAFE
    assert rendered.error == f"{directory}/mine/_parts.j2:3: ZeroDivisionError: division by zero"


def test_unknown_set_falls_back_to_safe_card() -> None:
    rendered = RENDERER.render(sample("firing"), Target(name="ops", template="nosuch"))
    assert (rendered.template, rendered.error) == (SAFE, "template set 'nosuch' not found")


def test_safe_message_for_text_and_post_targets() -> None:
    n = sample("cjk-hostile-firing")
    text = RENDERER.safe_message(n, Target(name="t", msg_type="text"), compact=True, omitted=2)
    assert text["msg_type"] == "text" and "<at" not in text["content"]["text"]
    assert "另有 2 条告警" in text["content"]["text"]
    post = RENDERER.safe_message(n, Target(name="p", msg_type="post", language="en"))
    assert post["content"]["post"]["en_us"]["title"] == "[FIRING:1] 磁盘空间不足"
    assert h.card_problem(post) is None and h.card_problem(text) is None


def test_safe_message_stays_small_for_huge_annotations() -> None:
    data = raw("firing")
    data["alerts"][0]["annotations"]["summary"] = "<at id=all></at>" * 10_000
    data["alerts"][0]["labels"]["instance"] = "i" * 10_000
    n = parse_notification(data)
    for compact in (False, True):
        message = RENDERER.safe_message(n, Target(name="ops"), compact=compact, reason="too large")
        assert len(json.dumps(message, ensure_ascii=False).encode()) < 2_000
        assert "<at" not in json.dumps(message)


def test_odd_input_still_renders() -> None:
    empty = sample("firing").with_alerts([])
    target = Target(name="ops", language="xx", timezone="Mars/Olympus")
    message = ok(RENDERER.render(empty, target, now=NOW))
    assert message["card"]["header"]["title"]["content"] == "[已恢复] HighCPU"
    times = ok(RENDERER.render(sample("firing"), target, now=NOW))
    assert "开始 2026-11-28 13:46:21 UTC" in markdowns(times)[0]


# ---- overrides ------------------------------------------------------------------------


def test_user_dir_overrides_one_file_only(tmp_path: Path) -> None:
    custom = '{"msg_type": "text", "content": {"text": "custom {{ alertname }}"}}'
    renderer = Renderer(user_dir(tmp_path, {"default/firing-critical.json.j2": custom}))
    firing = renderer.render(sample("firing"), Target(name="ops"))
    assert ok(firing) == {"msg_type": "text", "content": {"text": "custom HighCPU"}}
    resolved = renderer.render(sample("resolved"), Target(name="ops"), now=NOW)
    assert ok(resolved) == ok(RENDERER.render(sample("resolved"), Target(name="ops"), now=NOW))


def test_new_set_catch_all_and_inherited_files(tmp_path: Path) -> None:
    directory = user_dir(
        tmp_path,
        {
            "solo/default.json.j2": '{"msg_type": "text", "content": {"text": "{{ kind }}"}}',
            "mine/_macros.j2": (
                '{% import "default/_macros.j2" as base with context %}'
                "{% macro card(colour, tag_colour) %}{{ base.card('violet', tag_colour) }}"
                "{% endmacro %}"
            ),
        },
    )
    renderer = Renderer(directory)
    for name, kind in (("firing", "critical"), ("resolved", "resolved")):
        rendered = renderer.render(sample(name), Target(name="ops", template="solo"))
        assert rendered.template == "solo/default.json.j2"
        assert ok(rendered)["content"]["text"] == kind
    mine = renderer.render(sample("firing"), Target(name="ops", template="mine"))
    assert mine.template == "mine/firing-critical.json.j2"
    assert ok(mine)["card"]["header"]["template"] == "violet"
    assert "_macros.j2" in renderer.template_names("mine")
    assert renderer.template_names("solo")[:2] == ["_macros.j2", "cardkit.json.j2"]
    assert renderer.template_names("nosuch") == []


def test_template_names_of_builtin_set() -> None:
    names = RENDERER.template_names("default")
    assert set(CARD_FILES) | {"text.json.j2", "post.json.j2", "cardkit.json.j2"} <= set(names)


# ---- check() ----------------------------------------------------------------------------


def test_check_builtins_is_clean() -> None:
    targets = [
        Target(name="zh"),
        Target(name="auto", language="auto", keyword="告警"),
        Target(name="text", msg_type="text"),
        Target(name="post", msg_type="post", language="auto"),
        Target(name="kit", card_template_id="AAqk"),
    ]
    assert RENDERER.check(targets) == []


def test_check_names_file_and_line(tmp_path: Path) -> None:
    directory = user_dir(
        tmp_path,
        {
            "default/firing-critical.json.j2": '{"msg_type": "interactive",\n"card": {{ x }\n}',
            "default/resolved.json.j2": '{\n\n"msg_type": "{{ missing.name }}"}',
            "mine/unused.j2": "{% if %}",
            "ok/default.json.j2": "[1, 2]",
        },
    )
    problems = Renderer(directory).check(
        [Target(name="ops"), Target(name="o", template="ok"), Target(name="x", template="zz")]
    )
    assert problems == [
        f"{directory}/default/firing-critical.json.j2:2: unexpected '}}'",
        f"{directory}/mine/unused.j2:1: Expected an expression, got 'end of statement block'",
        f"{directory}/default/resolved.json.j2:3: 'missing' is undefined",
        f"{directory}/ok/default.json.j2: output must be a JSON object",
        "target x: template set 'zz' not found",
    ]


def test_check_reports_missing_user_dir(tmp_path: Path) -> None:
    problems = Renderer(tmp_path / "nope").check([Target(name="ops")])
    assert problems == [f"{tmp_path / 'nope'}: templates dir not found"]


def test_render_error_is_an_exception() -> None:
    assert issubclass(RenderError, Exception)


# ---- helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (7380, "2h3m"),
     (86400, "1d"), (100800, "1d4h"), (-5, "0s")],
)  # fmt: skip
def test_human_duration(seconds: int, text: str) -> None:
    assert ct.human_duration(seconds) == text


def test_times_in_target_timezone() -> None:
    shanghai, dubai = ct.zone("Asia/Shanghai"), ct.zone("Asia/Dubai")
    assert ct.local_time("2026-11-28T13:46:21.618991123Z", shanghai) == "2026-11-28 21:46:21 CST"
    assert ct.local_time("2026-11-28T13:46:21Z", dubai) == "2026-11-28 17:46:21 UTC+04:00"
    assert ct.local_time("2026-11-28T13:46:21Z", ct.zone("UTC")) == "2026-11-28 13:46:21 UTC"
    assert ct.local_time("0001-01-01T00:00:00Z", shanghai) == ""
    assert ct.local_time("", shanghai) == ""
    assert ct.zone("Not/AZone") is UTC
    assert ct.between("2026-11-28T13:46:21.999999999+08:00", NOW) == "8h23m"
    assert ct.between("0001-01-01T00:00:00Z", NOW) == ""


def test_context_helpers_in_templates(tmp_path: Path) -> None:
    template = (
        '{"msg_type": "text", "content": {"text": "{{ since(alerts[0].startsAt) }}|'
        "{{ local_time(alerts[0].startsAt) }}|{{ silence_url(alerts[0]) }}|"
        "{{ silence_url(commonLabels) == links.silence }}|{{ alertmanager_url }}|"
        '{{ "abcdef" | truncate(4) }}|{{ target.timezone }}"}}'
    )
    renderer = Renderer(user_dir(tmp_path, {"default/firing-critical.json.j2": template}))
    target = Target(name="ops", timezone="Europe/Berlin")
    text = ok(renderer.render(sample("firing"), target, now=NOW))["content"]["text"]
    assert text.split("|") == [
        "23m",
        "2026-11-28 14:46:21 CET",
        "http://vm:19093/#/silences/new?filter=%7Balertname%3D%22HighCPU%22%2Cinstance%3D"
        "%22node1%3A9100%22%2Cjob%3D%22node%22%2Cseverity%3D%22critical%22%7D",
        "True",
        "http://vm:19093/#/alerts?receiver=ok&filter=%7Balertname%3D%22HighCPU%22%7D",
        "abc…",
        "Europe/Berlin",
    ]


def test_silence_filter_escapes_label_values() -> None:
    labels = {"b": 'say "hi"\\', "alertname": "X"}
    assert ct.matchers_text(labels) == '{alertname="X",b="say \\"hi\\"\\\\"}'
    assert ct.silence_url("", labels) == ""
    assert ct.silence_url("http://am/", {}) == ""


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://g.example/d/x?a=(b c)", "https://g.example/d/x?a=(b%20c)"),
        ("HTTP://x.example", "HTTP://x.example"),
        ("javascript:alert(1)", ""),
        ("ftp://x", ""),
        ("https://", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_safe_url(url: Any, safe: str) -> None:
    assert ct.safe_url(url) == safe
    assert ct.is_http_url(url) == (bool(safe) and safe == url)


def test_truncate_counts_characters_and_keeps_entities_whole() -> None:
    assert ct.truncate("磁盘空间不足", 4) == "磁盘空…"
    assert ct.truncate("short", 10) == "short"
    assert ct.truncate(ct.md("a" * 10 + "*"), 13) == "aaaaaaaaaa…"
