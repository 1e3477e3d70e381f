"""Walking a YAML tree into typed values, collecting every problem with its path."""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amfeishu.config.types import Config, Secret

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class ConfigError(Exception):
    """The config is invalid; `problems` lists every one, each with its path."""

    def __init__(
        self, problems: list[str], source: str = "", partial: Config | None = None
    ) -> None:
        self.problems = problems
        self.source = source
        self.partial = partial  # best effort, bad values replaced by defaults: to check the rest
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


class Reader:
    """Walks the YAML tree, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}" if path else text)

    def section(self, data: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problem(path, f"must be a mapping, got {kind(data)}")
            return {}
        for key in data:
            if key not in allowed:
                hint = _closest(str(key), allowed)
                self.problem(
                    join(path, str(key)),
                    "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""),
                )
        return data

    def expand(self, value: str, path: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(
                path,
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            )
            return ""

        return _ENV.sub(sub, value)

    def string(
        self, data: dict[str, Any], key: str, path: str, default: str | None = None
    ) -> str | None:
        if key not in data or data[key] is None:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(join(path, key), f"must be a string, got {kind(value)}")
            return default
        return self.expand(str(value), join(path, key))

    def secret(self, data: dict[str, Any], key: str, path: str) -> Secret | None:
        """`key` or `key_file` (never both); the value itself never reaches a message."""
        known = len(self.problems)
        inline = self.string(data, key, path)
        file_key = f"{key}_file"
        file_name = self.string(data, file_key, path)
        if inline is not None and file_name is not None:
            self.problem(path, f"set {key} or {file_key}, not both")
            return None
        if file_name is not None:
            file_path = (
                (self.base_dir / file_name) if not os.path.isabs(file_name) else Path(file_name)
            )
            try:
                text = file_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problem(
                    join(path, file_key), f"cannot read {file_name}: {exc.strerror or exc}"
                )
                return None
            if not text:
                self.problem(join(path, file_key), f"{file_name} is empty")
                return None
            return Secret(text)
        if inline is None:
            return None
        if not inline.strip():
            if len(self.problems) == known:  # an unset variable was already reported
                self.problem(join(path, key), "is empty")
            return None
        return Secret(inline.strip())

    def number(
        self,
        data: dict[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0,
        integer: bool = False,
        strict: bool = True,
    ) -> float:
        if key not in data or data[key] is None:
            return default
        value = data[key]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(self.expand(value, join(path, key)))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and float(value) != int(value))
        ):
            self.problem(
                join(path, key), f"must be a {'whole ' if integer else ''}number, got {value!r}"
            )
            return default
        if (value <= minimum) if strict else (value < minimum):
            self.problem(
                join(path, key), f"must be {'>' if strict else '>='} {minimum:g}, got {value:g}"
            )
            return default
        return int(value) if integer else float(value)

    def duration(
        self, data: dict[str, Any], key: str, path: str, default: float, *, allow_zero: bool = False
    ) -> float:
        raw = self.string(data, key, path)
        if raw is None:
            return default
        seconds = parse_duration(raw)
        if seconds is None:
            self.problem(join(path, key), f"must be a duration like 30s, 5m or 1h, got {raw!r}")
            return default
        if seconds == 0 and not allow_zero:
            self.problem(join(path, key), f"must be > 0, got {raw!r}")
            return default
        return seconds

    def boolean(self, data: dict[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if isinstance(value, str):
            value = {"true": True, "false": False}.get(
                self.expand(value, join(path, key)).lower(), value
            )
        if not isinstance(value, bool):
            self.problem(join(path, key), f"must be true or false, got {value!r}")
            return default
        return value

    def choice(
        self, data: dict[str, Any], key: str, path: str, default: str, options: tuple[str, ...]
    ) -> str:
        value = self.string(data, key, path, default) or default
        if value not in options:
            self.problem(join(path, key), f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return value

    def timezone(self, data: dict[str, Any], key: str, path: str, default: str) -> str:
        value = self.string(data, key, path, default) or default
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(
                join(path, key),
                f"unknown time zone {value!r} (use an IANA name like Asia/Shanghai)",
            )
            return default
        return value


def parse_duration(text: str) -> float | None:
    """Prometheus-style duration (`1h30m`, `500ms`, `0s`) in seconds; None when malformed."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _closest(key: str, allowed: tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
    return found[0] if found else None
