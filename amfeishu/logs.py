"""Logging set-up, request ids and W3C trace context.

Every line carries the request id (the short form of the trace id), so a
card's footer id, a receiver line and a delivery line can be joined.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_FIELDS = ("target", "outcome", "alerts", "attempts")


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
    """Continue an incoming W3C traceparent, or start a new trace."""
    m = _TRACEPARENT.match((header or "").strip().lower())
    if m and m.group(1) != "0" * 32:
        return Trace(m.group(1), secrets.token_hex(8))
    return Trace(secrets.token_hex(16), secrets.token_hex(8))


def short_id(traceparent: str) -> str:
    m = _TRACEPARENT.match(traceparent or "")
    return m.group(1)[:12] if m else (traceparent or "-")[:12]


@contextlib.contextmanager
def bind_request_id(value: str) -> Iterator[None]:
    token = _request_id.set(value)
    try:
        yield
    finally:
        _request_id.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None)
        record.request_id = short_id(rid) if rid and rid != "-" else _request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [f"{k}={getattr(record, k)}" for k in _FIELDS if hasattr(record, k)]
        return f"{text} {' '.join(extras)}" if extras else text


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        data.update({k: getattr(record, k) for k in _FIELDS if hasattr(record, k)})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):  # their lines carry full webhook URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
