from __future__ import annotations

import pytest

from amfeishu.matchers import MatcherError, parse_matcher


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity=critical", {"severity": "critical"}, True),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('team=~"db|infra"', {"team": "infra"}, True),
        ('team=~"db|infra"', {"team": "infra2"}, False),  # anchored like Alertmanager
        ('team=~"db"', {"team": "xdbx"}, False),
        ('team!~"db.*"', {"team": "web"}, True),
        ('team=""', {}, True),  # absent label matches the empty string
        ('team!=""', {}, False),
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
        ('x=~".+"', {"x": "a\nb"}, True),
        ('  job = "node" ', {"job": "node"}, True),
    ],
)
def test_matching(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('="x"', "must start with a label name"),
        ("severity~critical", "expected one of = != =~ !~"),
        ('a="unterminated', "missing closing quote"),
        ('a=~"("', "invalid regular expression"),
        ('a="x" b', "unexpected text after the closing quote"),
        ("a=b,c", "unquoted value contains"),
    ],
)
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(MatcherError, match=message):
        parse_matcher(text)


def test_str_round_trips() -> None:
    m = parse_matcher('a=~"x\\"y"')
    assert parse_matcher(str(m)) == m
