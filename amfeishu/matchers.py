"""Alertmanager label-matcher syntax: `name="v"`, `name!=v`, `name=~"re"`, `name!~"re"`.

Regexes are anchored the way Alertmanager anchors them (`^(?:re)$`), and an
absent label matches as the empty string, as in Alertmanager.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPERATORS = ("=~", "!~", "!=", "=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        assert self._regex is not None  # set by parse_matcher for regex ops
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """One matcher, e.g. `team=~"db|infra"`; MatcherError says what is wrong."""
    source = text.strip()
    m = _NAME.match(source)
    if not m:
        raise MatcherError(f"{text!r}: must start with a label name")
    name, rest = m.group(0), source[m.end() :].lstrip()
    op = next((o for o in OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise MatcherError(f"{text!r}: expected one of = != =~ !~ after {name!r}")
    raw = rest[len(op) :].strip()
    value = _unquote(raw, text)
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(f"(?:{value})", re.DOTALL)
        except re.error as exc:
            raise MatcherError(f"{text!r}: invalid regular expression: {exc}") from None
    return Matcher(name, op, value, regex)


def _unquote(raw: str, text: str) -> str:
    if not raw.startswith('"'):
        if any(c in raw for c in '"{},'):
            raise MatcherError(f"{text!r}: unquoted value contains a quote, brace or comma")
        return raw
    out: list[str] = []
    i = 1
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            if raw[i + 1 :].strip():
                raise MatcherError(f"{text!r}: unexpected text after the closing quote")
            return "".join(out)
        out.append(c)
        i += 1
    raise MatcherError(f"{text!r}: missing closing quote")


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
