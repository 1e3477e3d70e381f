"""Alertmanager's two grammars for label matchers, with its own error texts.

`read_utf8` is the parser of Alertmanager 0.27+ (matcher/parse/lexer.go and
parse.go in prometheus/alertmanager), `read_classic` the one before it
(matcher/oldparse/parse.go, pkg/labels/parse.go up to 0.26), both ported
rule for rule so that a string means here what it means there. What a
refusal says is word for word what Alertmanager says. amfeishu/matchers.py
decides which reading counts; the syntax is documented at
https://prometheus.io/docs/alerting/latest/configuration/#label-matchers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import NamedTuple

_RESERVED = frozenset("{}!=~,\\\"'`")


class Parsed(NamedTuple):
    name: str
    op: str
    value: str


class RefusedError(Exception):
    """A refusal, its text as Alertmanager's parser words it."""


class _End(RefusedError):
    def __init__(self) -> None:
        super().__init__("end of input")


def read_utf8(text: str) -> list[Parsed]:
    """Every matcher in `text` as the UTF-8 parser reads it."""
    return _Parser(text).parse()


# ---- the UTF-8 parser: matcher/parse/{lexer,parse}.go ------------------------------------

_OPEN, _CLOSE, _COMMA, _OP, _QUOTED, _UNQUOTED, _EOF = range(7)


class _Token(NamedTuple):
    kind: int
    value: str
    start: int  # columns (code points), as Alertmanager counts them
    end: int


def _is_space(c: str) -> bool:
    return c.isspace() and c not in "\x1c\x1d\x1e\x1f"  # Go's unicode.IsSpace


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text, self.start, self.pos = text, 0, 0
        self.error: RefusedError | None = None  # once the input is bad, every scan says so

    def peek(self) -> _Token:
        start, pos = self.start, self.pos
        try:
            return self.scan()
        finally:
            self.start, self.pos = start, pos

    def scan(self) -> _Token:
        if self.error is not None:
            raise self.error
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in "{},":
                self.pos += 1
                return self._emit({"{": _OPEN, "}": _CLOSE, ",": _COMMA}[c])
            if c in "=!":
                return self._operator()
            if c == '"':
                return self._quoted()
            if not (_is_space(c) or c in _RESERVED):
                while self.pos < len(text) and not (
                    _is_space(text[self.pos]) or text[self.pos] in _RESERVED
                ):
                    self.pos += 1
                return self._emit(_UNQUOTED)
            self.pos += 1
            if _is_space(c):
                self.start = self.pos
                continue
            return self._fail(f"{self._here()}: invalid input")
        return _Token(_EOF, "", 0, 0)

    def _operator(self) -> _Token:
        first = self.text[self.pos]
        self.pos += 1
        follows = self.text[self.pos : self.pos + 1]
        if first == "=" and follows != "~":
            return self._emit(_OP)
        if follows in ("=", "~"):
            self.pos += 1
            return self._emit(_OP)
        if self.pos >= len(self.text):
            at = f"{self.start}:{self.pos}: unexpected end of input"
            return self._fail(f"{at}, expected one of '=~'")
        return self._fail(f"{self._here()}: expected one of '=~'")

    def _quoted(self) -> _Token:
        self.pos += 1
        escaped = False
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                return self._emit(_QUOTED)
        return self._fail(f'{self._here()}: missing end "')

    def _here(self) -> str:
        return f"{self.start}:{self.pos}: {self.text[self.start : self.pos]}"

    def _emit(self, kind: int) -> _Token:
        token = _Token(kind, self.text[self.start : self.pos], self.start, self.pos)
        self.start = self.pos
        return token

    def _fail(self, message: str) -> _Token:
        self.error = RefusedError(message)
        raise self.error


_Step = Callable[[], "_Step | None"]


class _Parser:
    """The state machine of matcher/parse/parse.go: each step returns the next one."""

    def __init__(self, text: str) -> None:
        self.lexer = _Lexer(text)
        self.found: list[Parsed] = []
        self.open_brace = False

    def parse(self) -> list[Parsed]:
        step: _Step | None = self._open_brace
        while step is not None:
            step = step()
        return self.found

    def _open_brace(self) -> _Step | None:
        try:
            self.open_brace = self._accept(_OPEN)
            if self._peek_is(_CLOSE):
                return self._close_brace
        except _End:
            return self._close_brace if self.open_brace else self._eof
        return self._matcher

    def _close_brace(self) -> _Step | None:
        if self.open_brace:
            try:
                self._expect(_CLOSE)
            except RefusedError as exc:
                raise RefusedError(f"0:{self.lexer.pos}: {exc}: expected close brace") from None
        else:
            try:
                self._expect(_CLOSE)
            except RefusedError:
                pass
            else:
                raise RefusedError(f"0:{self.lexer.pos}: }}: expected opening brace")
        return self._eof

    def _matcher(self) -> _Step | None:
        name = self._unquote(self._expect(_QUOTED, _UNQUOTED, wanted="expected label name"))
        op = self._expect(_OP, wanted="expected an operator such as '=', '!=', '=~' or '!~'")
        value = self._unquote(self._expect(_UNQUOTED, _QUOTED, wanted="expected label value"))
        self.found.append(Parsed(name, op.value, value))
        try:
            token = self._expect_peek(_COMMA, _CLOSE)
        except _End:
            return self._close_brace
        except RefusedError as exc:
            raise RefusedError(f"{exc}: expected a comma or close brace") from None
        return self._comma if token.kind == _COMMA else self._close_brace

    def _comma(self) -> _Step | None:
        self._expect(_COMMA, wanted="expected a comma")
        try:
            token = self._expect_peek(_CLOSE, _UNQUOTED, _QUOTED)
        except _End:
            return self._close_brace
        except RefusedError as exc:
            raise RefusedError(f"{exc}: expected a matcher or close brace after comma") from None
        return self._close_brace if token.kind == _CLOSE else self._matcher

    def _eof(self) -> _Step | None:
        try:
            token = self.lexer.scan()
        except RefusedError as exc:
            raise RefusedError(f"{exc}: expected end of input") from None
        if token.kind != _EOF:
            raise RefusedError(f"{token.start}:{token.end}: {token.value}: expected end of input")
        return None

    def _accept(self, kind: int) -> bool:
        if self._peek_is(kind):
            self.lexer.scan()
            return True
        return False

    def _peek_is(self, kind: int) -> bool:
        token = self.lexer.peek()
        if token.kind == _EOF:
            raise _End()
        return token.kind == kind

    def _expect(self, *kinds: int, wanted: str = "") -> _Token:
        try:
            token = self._expect_peek(*kinds)
        except RefusedError as exc:
            if not wanted:
                raise
            raise RefusedError(f"{exc}: {wanted}") from None
        self.lexer.scan()
        return token

    def _expect_peek(self, *kinds: int) -> _Token:
        token = self.lexer.peek()
        if token.kind == _EOF:
            raise _End()
        if token.kind not in kinds:
            raise RefusedError(f"{token.start}:{token.end}: unexpected {token.value}")
        return token

    def _unquote(self, token: _Token) -> str:
        if token.kind != _QUOTED:
            return token.value
        text = _go_unquote(token.value)
        if text is None:
            raise RefusedError(f"{token.start}:{token.end}: {token.value}: invalid input")
        return text


_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_DIGITS = {"x": 2, "u": 4, "U": 8}


def _go_unquote(quoted: str) -> str | None:
    """Go's strconv.Unquote of a double-quoted string, or None where Go refuses it."""
    body = quoted[1:-1]
    if "\n" in body:
        return None
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        kind = body[i + 1 : i + 2]  # the lexer never ends a string on a lone backslash
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            i += 2
        elif kind in _DIGITS:
            digits = body[i + 2 : i + 2 + _DIGITS[kind]]
            if len(digits) != _DIGITS[kind] or not all(d in string.hexdigits for d in digits):
                return None
            code = int(digits, 16)
            if kind == "x":
                out.append(code)
            elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                return None
            else:
                out += chr(code).encode()
            i += 2 + len(digits)
        elif kind and kind in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in string.octdigits for d in digits):
                return None
            if int(digits, 8) > 255:
                return None
            out.append(int(digits, 8))
            i += 4
        else:
            return None
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:  # Alertmanager: "quoted string contains invalid UTF-8"
        return None


# ---- the classic parser: matcher/oldparse/parse.go (pkg/labels before 0.27) ---------------

_CLASSIC = re.compile(
    r"[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*(.*?)[\t\n\f\r ]*",
    re.DOTALL,
)


def read_classic(text: str) -> list[Parsed]:
    """Every matcher in `text` as the classic parser reads it: split at commas, then each."""
    text = text.removeprefix("{").removesuffix("}")
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for c in text:  # split at commas outside double quotes
        if c == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        if c == '"':
            quoted, escaped = (not quoted, False) if not escaped else (quoted, False)
        elif c == "\\":
            escaped = not escaped
        elif c != ",":
            escaped = False
        current.append(c)
    last = "".join(current)
    while last and _is_space(last[0]):  # Go's strings.TrimSpace
        last = last[1:]
    while last and _is_space(last[-1]):
        last = last[:-1]
    if last:
        parts.append(last)
    return [_classic_matcher(part) for part in parts]


def _classic_matcher(text: str) -> Parsed:
    found = _CLASSIC.fullmatch(text)
    if found is None:
        raise RefusedError(f"bad matcher format: {text}")
    name, op, raw = found.groups()
    rest, closing = raw, False
    if rest.startswith('"'):
        rest, closing = rest[1:], True
    value: list[str] = []
    escaped = False
    for i, c in enumerate(rest):
        if escaped:
            escaped = False
            value.append({"n": "\n", '"': '"', "\\": "\\"}.get(c, "\\" + c))
        elif c == "\\" and i < len(rest) - 1:
            escaped = True
        elif c == '"':
            if not closing or i < len(rest) - 1:
                raise RefusedError(f"matcher value contains unescaped double quote: {raw}")
            closing = False
        else:
            value.append(c)
    if closing:
        raise RefusedError(f"matcher value contains unescaped double quote: {raw}")
    return Parsed(name, op, "".join(value))
