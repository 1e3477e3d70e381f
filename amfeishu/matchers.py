"""Alertmanager's label matchers, read the way Alertmanager 0.27+ reads them by default.

The syntax is https://prometheus.io/docs/alerting/latest/configuration/#label-matchers:
one string holds one matcher or several (`severity="critical"`,
`{alertname="Watchdog", severity=~"warning|critical",}`); label names and
values are unquoted UTF-8 literals (`service.name=api`) or double-quoted
strings with Go's escapes (`"service name"="a\\"b"`). As in Alertmanager's
default "fallback" mode (matcher/compat/parse.go in prometheus/alertmanager),
a string is read by the UTF-8 parser and, when that refuses it, by the
classic one (`foo=`, `{a="b"` without its brace); where both read it but
differently, the classic reading wins. `strict=True` is the UTF-8 parser
alone (`--enable-feature=utf8-strict-mode`). A string both refuse gets the
UTF-8 parser's message, word for word, as Alertmanager prints it.

Regexes are anchored the way Alertmanager anchors them (`^(?:re)$`), and an
absent label matches as the empty string, as in Alertmanager.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from amfeishu.matcher_syntax import Parsed, RefusedError, read_classic, read_utf8

OPERATORS = ("=~", "!~", "!=", "=")
_CLASSIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class MatcherError(ValueError):
    """A matcher string that does not parse; the message says where."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None  # set by _matcher for regex ops
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        """A string both of Alertmanager's parsers read back as this matcher."""
        name = self.name if _CLASSIC_NAME.fullmatch(self.name) else _go_quote(self.name)
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{name}{self.op}"{escaped}"'


def parse_matchers(text: str, *, strict: bool = False) -> tuple[Matcher, ...]:
    """Every matcher in `text` (all must match); MatcherError says what is wrong."""
    utf8: list[Parsed] | None = None
    refusal = ""
    try:
        utf8 = read_utf8(text)
    except RefusedError as exc:
        if strict:
            raise MatcherError(f"{text!r}: {exc}") from None
        refusal = str(exc)
    chosen = utf8
    if not strict:
        try:
            classic = read_classic(text)
        except RefusedError:
            if utf8 is None:
                raise MatcherError(f"{text!r}: {refusal}") from None
        else:
            if utf8 != classic:  # refused by the UTF-8 parser, or read differently
                chosen = classic
    assert chosen is not None
    return tuple(_matcher(text, m) for m in chosen)


def parse_matcher(text: str) -> Matcher:
    """Exactly one matcher, e.g. `team=~"db|infra"`."""
    found = parse_matchers(text)
    if len(found) != 1:
        raise MatcherError(
            f"{text!r}: " + (f"expected 1 matcher, found {len(found)}" if found else "no matchers")
        )
    return found[0]


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _matcher(text: str, m: Parsed) -> Matcher:
    regex = None
    if m.op in ("=~", "!~"):
        try:
            regex = re.compile(f"(?:{m.value})", re.DOTALL)
        except re.error as exc:
            raise MatcherError(f"{text!r}: invalid regular expression: {exc}") from None
    return Matcher(m.name, m.op, m.value, regex)


def _go_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
