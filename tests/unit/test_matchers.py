"""Alertmanager's matcher syntax, held to its documentation and its own parser's tests.

Sources: https://prometheus.io/docs/alerting/latest/configuration/#label-matchers
(the examples below marked "docs") and prometheus/alertmanager's
matcher/parse/parse_test.go (the strict-mode table: inputs and error texts).
tests/e2e/test_amtool.py checks the classic syntax against Debian's amtool.
"""

from __future__ import annotations

import pytest

from amfeishu.config.load import build_config
from amfeishu.matchers import Matcher, MatcherError, matches_all, parse_matcher, parse_matchers

P = tuple[str, str, str]
WATCHDOG = [("alertname", "=", "Watchdog"), ("severity", "=~", "warning|critical")]


def read(text: str, *, strict: bool = False) -> list[P] | str:
    """The (name, op, value) of each matcher, or the error after the quoted input."""
    try:
        return [(m.name, m.op, m.value) for m in parse_matchers(text, strict=strict)]
    except MatcherError as exc:
        prefix = f"{text!r}: "
        assert str(exc).startswith(prefix), exc
        return str(exc)[len(prefix) :]


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity=critical", {"severity": "critical"}, True),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('team=~"db|infra"', {"team": "infra"}, True),
        ('team=~"db|infra"', {"team": "infra2"}, False),  # anchored like Alertmanager
        ('team=~"db"', {"team": "xdbx"}, False),
        ("{team=~db}", {"team": "xdbx"}, False),
        ('team!~"db.*"', {"team": "web"}, True),
        ('team=""', {}, True),  # absent label matches the empty string
        ('team!=""', {}, False),
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
        ('x=~".+"', {"x": "a\nb"}, True),
        ('  job = "node" ', {"job": "node"}, True),
        ('"service.name"="api"', {"service.name": "api"}, True),
        ("service.name=api", {"service.name": "api"}, True),
        ('"service.name"="api"', {"service_name": "api"}, False),
        ("Προμηθεύς=~Π.*", {"Προμηθεύς": "Προμηθεύς"}, True),
        # docs, "Composition of matchers": all must match
        ('{alertname="Watchdog", severity=~"warning|critical"}', {"alertname": "Watchdog"}, False),
        (
            '{alertname="Watchdog", severity=~"warning|critical"}',
            {"alertname": "Watchdog", "severity": "critical"},
            True,
        ),
        (
            '{alertname="Watchdog", severity=~"warning|critical"}',
            {"alertname": "Watchdog", "severity": "none"},
            False,
        ),
        ("", {"any": "thing"}, True),  # no matchers: like a route without any
    ],
)
def test_matching(text: str, labels: dict[str, str], expected: bool) -> None:
    assert matches_all(parse_matchers(text), labels) is expected


# (input, what Alertmanager 0.27+ reads by default, what its UTF-8 strict mode reads or says)
DOCS: list[tuple[str, list[P] | str, list[P] | str]] = [
    ("alertname = Watchdog", WATCHDOG[:1], WATCHDOG[:1]),
    ('severity =~ "warning|critical"', WATCHDOG[1:], WATCHDOG[1:]),
    ('{alertname="Watchdog", severity=~"warning|critical"}', WATCHDOG, WATCHDOG),
    ('{alertname="Watchdog", severity=~"warning|critical",}', WATCHDOG, WATCHDOG),
    ('alertname="Watchdog", severity=~"warning|critical"', WATCHDOG, WATCHDOG),
    ('{\n   alertname = "Watchdog",\n   severity =~ "warning|critical",\n}', WATCHDOG, WATCHDOG),
    ('{alertname="Watchdog",severity=~"warning|critical"}', WATCHDOG, WATCHDOG),
    # "You cannot have incomplete open or close braces": true of the UTF-8 parser; the
    # default fallback mode still reads them with the classic parser (and logs a warning)
    (
        '{alertname="Watchdog", severity=~"warning|critical"',
        WATCHDOG,
        "0:51: end of input: expected close brace",
    ),
    (
        'alertname="Watchdog", severity=~"warning|critical"}',
        WATCHDOG,
        "0:51: }: expected opening brace",
    ),
    (
        '{{alertname="Watchdog", severity=~"warning|critical",}}',
        "1:2: unexpected {: expected label name",
        "1:2: unexpected {: expected label name",
    ),
    ("foo = bar", [("foo", "=", "bar")], [("foo", "=", "bar")]),
    ("dings != bums", [("dings", "!=", "bums")], [("dings", "!=", "bums")]),
    ('foo = "bar,baz"', [("foo", "=", "bar,baz")], [("foo", "=", "bar,baz")]),
    (
        '{foo="bar", dings!="bums"}',
        [("foo", "=", "bar"), ("dings", "!=", "bums")],
        [("foo", "=", "bar"), ("dings", "!=", "bums")],
    ),
    (
        '{quote=~"She said: \\"Hi, all!( How\'re you…)?\\""}\n',  # a YAML block keeps the \n
        [("quote", "=~", 'She said: "Hi, all!( How\'re you…)?"')],
        [("quote", "=~", 'She said: "Hi, all!( How\'re you…)?"')],
    ),
    # unquoted literals: any UTF-8 but whitespace and { } ! = ~ , \ " ' `
    ("foo=~[a-zA-Z]+", [("foo", "=~", "[a-zA-Z]+")], [("foo", "=~", "[a-zA-Z]+")]),
    (
        "Προμηθεύς=Προμηθεύς",
        [("Προμηθεύς", "=", "Προμηθεύς")],
        [("Προμηθεύς", "=", "Προμηθεύς")],
    ),
    (
        "x=foo!",  # "foo! is not a valid literal"; the classic parser takes it whole
        [("x", "=", "foo!")],
        "5:6: unexpected end of input, expected one of '=~': expected a comma or close brace",
    ),
    # double-quoted strings: Go's escapes
    ('x="foo!"', [("x", "=", "foo!")], [("x", "=", "foo!")]),
    ('x="bar,baz"', [("x", "=", "bar,baz")], [("x", "=", "bar,baz")]),
    ('x="\\"baz qux\\""', [("x", "=", '"baz qux"')], [("x", "=", '"baz qux"')]),
    ('x="\\\\d+"', [("x", "=", "\\d+")], [("x", "=", "\\d+")]),
    # fallback mode: "foo=" logs the suggestion foo=""; strict mode refuses it
    ("foo=", [("foo", "=", "")], "end of input: expected label value"),
    # disagreement: the classic reading (a literal backslash) wins in fallback mode
    ('qux="\\xf0\\x9f\\x99\\x82"', [("qux", "=", "\\xf0\\x9f\\x99\\x82")], [("qux", "=", "🙂")]),
    (
        'qux="\\\\xf0\\\\x9f\\\\x99\\\\x82"',
        [("qux", "=", "\\xf0\\x9f\\x99\\x82")],
        [("qux", "=", "\\xf0\\x9f\\x99\\x82")],
    ),
]


@pytest.mark.parametrize(("text", "fallback", "strict"), DOCS)
def test_the_examples_of_alertmanagers_docs(
    text: str, fallback: list[P] | str, strict: list[P] | str
) -> None:
    assert read(text) == fallback
    assert read(text, strict=True) == strict


# matcher/parse/parse_test.go, TestMatchers: the UTF-8 parser alone
FOO_BAR = [("foo", "=", "bar")]
UPSTREAM: list[tuple[str, list[P] | str]] = [
    ("", []),
    ("{}", []),
    ("{foo=bar}", FOO_BAR),
    ("{foo=bar,}", FOO_BAR),
    ("{foo!=bar}", [("foo", "!=", "bar")]),
    ("{foo=~[a-z]+}", [("foo", "=~", "[a-z]+")]),
    ("{foo!~[a-z]+}", [("foo", "!~", "[a-z]+")]),
    ("{foo=🙂}", [("foo", "=", "🙂")]),
    ("{foo=🙂bar}", [("foo", "=", "🙂bar")]),
    ("foo=bar", FOO_BAR),
    ("foo=bar,", FOO_BAR),
    ("foo!~[a-z]+", [("foo", "!~", "[a-z]+")]),
    ('{"foo"="bar"}', FOO_BAR),
    ('{"foo"="bar",}', FOO_BAR),
    ('{"foo"=~"[a-z]+"}', [("foo", "=~", "[a-z]+")]),
    ('{"foo"="🙂"}', [("foo", "=", "🙂")]),
    ('{"foo"="\\xf0\\x9f\\x99\\x82"}', [("foo", "=", "🙂")]),
    ('{"foo"="\\U0001f642"}', [("foo", "=", "🙂")]),
    ('{"foo"="bar\\n"}', [("foo", "=", "bar\n")]),
    ('{"foo"="bar\\t"}', [("foo", "=", "bar\t")]),
    ('{"foo"="\\"bar\\""}', [("foo", "=", '"bar"')]),
    ('{"foo"="bar\\\\"}', [("foo", "=", "bar\\")]),
    ('"foo"="bar"', FOO_BAR),
    ('"foo"="bar",', FOO_BAR),
    ("{foo=bar,bar!=baz}", [("foo", "=", "bar"), ("bar", "!=", "baz")]),
    ('{foo="bar",bar!="baz"}', [("foo", "=", "bar"), ("bar", "!=", "baz")]),
    ("foo=bar,bar!=baz", [("foo", "=", "bar"), ("bar", "!=", "baz")]),
    (",", "0:1: unexpected ,: expected label name"),
    ("{,}", "1:2: unexpected ,: expected label name"),
    ("{", "0:1: end of input: expected close brace"),
    ("}", "0:1: }: expected opening brace"),
    ("foo=bar}", "0:8: }: expected opening brace"),
    ("{foo=bar", "0:8: end of input: expected close brace"),
    ('{foo=:"bar"}', '6:11: unexpected "bar": expected a comma or close brace'),
    ('{foo="bar\\w"}', '5:12: "bar\\w": invalid input'),
    ("{foo=bar\\n}", "8:9: \\: invalid input: expected a comma or close brace"),
    ('{"foo"="\\xf0\\x9f"}', '7:17: "\\xf0\\x9f": invalid input'),
]


@pytest.mark.parametrize(("text", "expected"), UPSTREAM)
def test_alertmanagers_own_parser_table(text: str, expected: list[P] | str) -> None:
    assert read(text, strict=True) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('="x"', "0:1: unexpected =: expected label name"),
        (
            "severity~critical",
            "8:9: ~: invalid input: expected an operator such as '=', '!=', '=~' or '!~'",
        ),
        (
            "a!b",
            "1:2: !: expected one of '=~': expected an operator such as '=', '!=', '=~' or '!~'",
        ),
        ('a="unterminated', '2:15: "unterminated: missing end ": expected label value'),
        (
            'a=~"("',
            "invalid regular expression: missing ), unterminated subpattern at position 0",
        ),
        ('a="x" b', "6:7: unexpected b: expected a comma or close brace"),
        ("a=b,c", "end of input: expected an operator such as '=', '!=', '=~' or '!~'"),
        ("a=b,,c=d", "4:5: unexpected ,: expected a matcher or close brace after comma"),
        ('{a="b"}}', "7:8: }: expected end of input"),
        ('{a="b"} x', "8:9: x: expected end of input"),
        ('"a"="\\q"', '4:8: "\\q": invalid input'),
        ('"\\ud800"="x"', '0:8: "\\ud800": invalid input'),  # a surrogate is no code point
    ],
)
def test_errors_name_the_problem(text: str, message: str) -> None:
    # refused by both parsers: the UTF-8 parser's words, as Alertmanager prints them
    with pytest.raises(MatcherError) as info:
        parse_matchers(text)
    assert str(info.value) == f"{text!r}: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=b,c=d", "expected 1 matcher, found 2"),
        ("{}", "no matchers"),
        ("a=b,,", "4:5: unexpected ,: expected a matcher or close brace after comma"),
    ],
)
def test_parse_matcher_wants_exactly_one(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matcher(text)
    assert str(info.value) == f"{text!r}: {message}"


@pytest.mark.parametrize(
    "text",
    ['a=~"x\\"y"', 'msg="line\\nnext \\\\ back"', '"service.name"!~"a|b"', '"x\\"y z"="1"'],
)
def test_str_round_trips(text: str) -> None:
    m = parse_matcher(text)
    assert parse_matcher(str(m)) == m
    assert parse_matcher(str(m)) == parse_matchers(str(m), strict=True)[0]


def test_str_quotes_only_names_the_classic_parser_cannot_read() -> None:
    assert str(Matcher("team", "=", "db")) == 'team="db"'
    assert str(Matcher("service.name", "!=", 'a"b')) == '"service.name"!="a\\"b"'


def test_a_braces_string_in_a_route_adds_each_of_its_matchers() -> None:
    hook = "https://open.feishu.cn/open-apis/bot/v2/hook/t"
    routes = [{"matchers": ['{team=~"db|infra", "service.name"="api",}', 'env="prod"']}]
    config = build_config(
        {"targets": {"ops": {"webhook": hook}}, "routes": [{**routes[0], "targets": ["ops"]}]},
        env={},
    )
    got = [(m.name, m.op, m.value) for m in config.routes[0].matchers]
    assert got == [("team", "=~", "db|infra"), ("service.name", "=", "api"), ("env", "=", "prod")]
