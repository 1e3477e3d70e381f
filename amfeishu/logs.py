"""Logging set-up, request ids and W3C trace context.

Every line carries the request id (the short form of the trace id), so a
card's footer id, a receiver line and a delivery line can be joined. Three
formats (README.md, "Command line and logs"): text for a terminal, logfmt
and JSON for log shippers; every one stamps RFC 3339 times with a zone.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_FIELDS = ("target", "outcome", "alerts", "attempts")
_random = random.Random(secrets.randbits(64))  # seeded once from the OS


@dataclass(frozen=True)
class Trace:
    trace_id: str
    span_id: str

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"

    @property
    def short(self) -> str:
        return self.trace_id[:12]


def new_trace(header: str | None) -> Trace:
    """Continue an incoming W3C traceparent, or start a new trace.

    Ids need to be unique, not secret (W3C trace context): a fast random source, not
    os.urandom's two system calls per request.
    """
    span = f"{_random.getrandbits(64):016x}"
    if header:
        m = _TRACEPARENT.match(header.strip().lower())
        if m and m.group(1) != "0" * 32:
            return Trace(m.group(1), span)
    return Trace(f"{_random.getrandbits(128):032x}", span)


def short_id(traceparent: str) -> str:
    m = _TRACEPARENT.match(traceparent or "")
    return m.group(1)[:12] if m else (traceparent or "-")[:12]


def bind_request_id(value: str) -> contextvars.Token[str]:
    """Every log line of this task carries `value` until unbind_request_id(the token)."""
    return _request_id.set(value)


def unbind_request_id(token: contextvars.Token[str]) -> None:
    _request_id.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None)
        record.request_id = short_id(rid) if rid and rid != "-" else _request_id.get()
        return True


def log_zone(env: Mapping[str, str]) -> tzinfo | None:
    """UTC, unless the user chose a zone with TZ: then local time (None) with its offset."""
    return None if env.get("TZ") else UTC


def rfc3339(created: float, zone: tzinfo | None) -> str:
    """`2026-12-02T08:41:27.970Z`, or `…+08:00` in a zone with an offset (RFC 3339, 5.6)."""
    # astimezone(None) is the process's local zone, which follows TZ
    text = datetime.fromtimestamp(created, UTC).astimezone(zone).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _extras(record: logging.LogRecord) -> list[tuple[str, object]]:
    return [(key, getattr(record, key)) for key in _FIELDS if hasattr(record, key)]


class _ZonedFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None, *, zone: tzinfo | None = UTC) -> None:
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(record.created, self.zone)


class TextFormatter(_ZonedFormatter):
    """For a terminal: `2026-12-02T08:41:27.970Z INFO    amfeishu [req] message target=ops`."""

    def __init__(self, *, zone: tzinfo | None = UTC) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s", zone=zone
        )

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [f"{key}={value}" for key, value in _extras(record)]
        return f"{text} {' '.join(extras)}" if extras else text


class JSONFormatter(_ZonedFormatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        data.update(_extras(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class LogfmtFormatter(_ZonedFormatter):
    """Prometheus' own format: `ts=… level=info logger=… msg="…" target=ops request_id=…`.

    Quoting follows go-logfmt (https://pkg.go.dev/github.com/go-logfmt/logfmt): a
    value with a space, `=`, `"` or a control character is quoted and escaped, so
    every record stays one line, a traceback included.
    """

    def format(self, record: logging.LogRecord) -> str:
        pairs: list[tuple[str, object]] = [
            ("ts", self.formatTime(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
            *_extras(record),
            ("request_id", getattr(record, "request_id", "-")),
        ]
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in pairs)


def logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in ' ="' or not c.isprintable() for c in text):
        return text
    return '"' + "".join(_ESCAPES.get(c) or _escape(c) for c in text) + '"'


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    return char if char.isprintable() else f"\\u{ord(char):04x}"


FORMATS = {"text": TextFormatter, "logfmt": LogfmtFormatter, "json": JSONFormatter}
LEVELS = ("debug", "info", "warn", "warning", "error")


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Root logging to stderr; `level` and `fmt` are the serve flags' values (LEVELS, FORMATS)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(FORMATS[fmt](zone=log_zone(os.environ)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("WARNING" if level == "warn" else level.upper())  # Alertmanager says warn
    for noisy in ("httpx", "httpcore"):  # their lines carry full webhook URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
