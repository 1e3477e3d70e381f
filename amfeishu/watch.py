"""Reload when the config files, the files they name or a template change on disk.

Polling, not inotify: it works the same on every filesystem and in every
container. A Kubernetes ConfigMap or Secret volume changes by swapping the
``..data`` symlink, so files are reached through their symlinks and compared
by content: a swap with new content reloads, a touch or a swap with the same
content does not. A failed reload keeps the old set (Service.reload) and is
tried again when the files change again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from amfeishu.config.load import load_raw
from amfeishu.config.reader import ConfigError, parse_duration
from amfeishu.config.types import Config

log = logging.getLogger("amfeishu.reload")
DEFAULT_INTERVAL = 2.0
MAX_FILES = 10_000  # a templates.dir pointed at / must not eat the process
Signature = tuple[tuple[str, str, int, int], ...]


def configured_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between polls from AMFEISHU_WATCH_INTERVAL ("2s", "500ms", "0" = off)."""
    raw = (os.environ if env is None else env).get("AMFEISHU_WATCH_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    if raw.lower() in ("0", "off", "false", "no"):
        return None
    seconds = parse_duration(raw) if not raw.replace(".", "", 1).isdigit() else float(raw)
    if seconds == 0:
        return None
    if seconds is None or seconds < 0:
        log.warning(
            "AMFEISHU_WATCH_INTERVAL=%r is not a duration; using %ss", raw, DEFAULT_INTERVAL
        )
        return DEFAULT_INTERVAL
    return seconds


def watched(config: Config) -> tuple[list[Path], Path | None]:
    """The config files (and the *_file secrets they name), and the templates dir."""
    files = [Path(p) for p in config.source.split(" + ") if p and not p.startswith("<")]
    extra: list[Path] = []
    base = files[0].resolve().parent if files else Path.cwd()  # as load_config resolves them
    for path in files:
        try:
            raw = load_raw(path)
        except ConfigError:
            continue  # unreadable now: the reload reports it
        for value in _file_keys(raw, skip=("tls",)):  # relative to the first file, as config.py
            extra.append(Path(value) if os.path.isabs(value) else _beside(files[0], base, value))
    if config.tls is not None:  # re-read on reload (a renewed certificate)
        tls = config.tls
        extra += [Path(p) for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p]
    templates = Path(config.templates.dir) if config.templates.dir else None
    return list(dict.fromkeys(files + extra)), templates


def _beside(config: Path, base: Path, name: str) -> Path:
    """Where config.py reads a relative *_file, by the visible path when it leads there
    too (a ConfigMap's ..data swap must not change the watched names)."""
    visible, real = config.parent / name, base / name
    return visible if os.path.realpath(visible) == os.path.realpath(real) else real


def _file_keys(node: Any, skip: tuple[str, ...]) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in skip:
                continue  # taken from the parsed config, paths resolved
            if str(key).endswith("_file") and isinstance(value, str) and "${" not in value:
                yield value
            else:
                yield from _file_keys(value, skip)
    elif isinstance(node, list):
        for item in node:
            yield from _file_keys(item, skip)


def _files(files: list[Path], templates: Path | None) -> list[Path]:
    out = list(files)
    if templates is None:
        return out
    seen: set[str] = set()
    for root, dirs, names in os.walk(templates, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        # ConfigMap internals (..data, ..2024_…) are reached through the visible symlinks
        dirs[:] = sorted(d for d in dirs if not d.startswith(".."))
        out.extend(Path(root, n) for n in sorted(names) if not n.startswith(".."))
        if len(out) > MAX_FILES:
            break
    return out


def signature(files: list[Path], templates: Path | None) -> Signature:
    """Cheap: where each file resolves to, its mtime and size (stat follows symlinks)."""
    out = []
    for path in _files(files, templates):
        try:
            st = path.stat()
            out.append((str(path), os.path.realpath(path), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(path), "", -1, -1))  # missing: a change when it comes back
    return tuple(out)


def digest(files: list[Path], templates: Path | None) -> str:
    """What a reload would read: the name and content of every file."""
    h = hashlib.sha256()
    for path in _files(files, templates):
        h.update(str(path).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError as exc:
            h.update(f"<unreadable: {exc.errno}>".encode())
        h.update(b"\0")
    return h.hexdigest()


async def watch(
    current: Callable[[], Config],
    reload: Callable[[], list[str]],
    interval: float = DEFAULT_INTERVAL,
) -> None:
    """Poll until cancelled; call `reload` (which keeps the old set on failure) when the
    content of the files `current()` names changes."""
    where = await asyncio.to_thread(watched, current())
    seen = await asyncio.to_thread(signature, *where)
    content = await asyncio.to_thread(digest, *where)
    log.info(
        "watching %d config file(s)%s for changes every %ss",
        len(where[0]),
        f" and {where[1]}" if where[1] else "",
        interval,
    )
    pending: str | None = None  # new content seen once: reloaded when the next poll agrees
    while True:
        await asyncio.sleep(interval)
        try:
            where = await asyncio.to_thread(watched, current())  # templates.dir may move
            now = await asyncio.to_thread(signature, *where)
            if now == seen and pending is None:
                continue
            seen = now
            new = await asyncio.to_thread(digest, *where)
            if new == content:
                pending = None  # a passing state (half a ConfigMap swap) that went away
                continue
            if new != pending:  # wait a poll: an editor's save or a swap may be half-done
                pending = new
                continue
            pending = None
            content = new
            log.info("config or templates changed on disk; reloading")
            problems = reload()
            if problems:
                log.error("reload after a file change failed; still serving the old set")
        except Exception:  # the watcher outlives any one bad poll
            log.exception("config watch: poll failed; trying again in %ss", interval)
