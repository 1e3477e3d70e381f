"""What a valid config needs of this machine, checked before deploy and at start.

`check-config` and `serve` both call `check` (docs/architecture.md, "Errors"):
the storage directory can be created and written, the redis package imports
when `storage.redis_url` is set, and the TLS files can be read. Each problem
names its config path (or flag), the cause and the fix, on one line.

Writability is tried, not inferred from mode bits: root passes every
permission check but still cannot write to a read-only filesystem.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from amfeishu.config.types import Config

_INSTALL_REDIS = "pip install 'amfeishu[redis]'"


def check(config: Config, tls_files: Sequence[tuple[str, str]] | None = None) -> list[str]:
    """Every problem of `config` on this machine; [] when it can start here.

    `tls_files` are (config path or flag, file) pairs of the certificate files
    served; by default those of the config's `tls:`.
    """
    problems = []
    storage = config.storage
    if storage.redis_url is not None:
        problems += _redis_package()
    elif storage.path != ":memory:":
        problems += _storage(storage.path)
    if tls_files is None:
        tls_files = _config_tls_files(config)
    problems += [p for label, path in tls_files if (p := _readable(label, path))]
    return problems


def make_storage_dir(config: Config) -> None:
    """Create the outbox's directory (`check` said it can be); OSError if that fails."""
    if config.storage.redis_url is None and config.storage.path != ":memory:":
        Path(config.storage.path).absolute().parent.mkdir(parents=True, exist_ok=True)


def _config_tls_files(config: Config) -> list[tuple[str, str]]:
    tls = config.tls
    if tls is None:
        return []
    files = [("tls.cert_file", tls.cert_file), ("tls.key_file", tls.key_file)]
    if tls.client_ca_file:
        files.append(("tls.client_ca_file", tls.client_ca_file))
    return files


def _redis_package() -> list[str]:
    try:
        importlib.import_module("redis.asyncio")
    except ImportError as exc:
        return [
            f"storage.redis_url: the redis package cannot be imported: {exc} ({_INSTALL_REDIS})"
        ]
    return []


def _storage(path: str) -> list[str]:
    file = Path(path).absolute()
    directory = file.parent
    fix = f"make it writable for uid {os.getuid()}, or set storage.path elsewhere"
    if not directory.exists():
        # The nearest existing ancestor decides whether the directory can be made.
        ancestor = directory.parent
        for _ in range(len(directory.parts)):
            if ancestor.exists() or ancestor == ancestor.parent:
                break
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return [
                f"storage.path: cannot create {directory}: {ancestor} is not a directory "
                "(set storage.path to a file in a writable directory)"
            ]
        reason = _cannot_write_in(ancestor)
        if reason:
            return [
                f"storage.path: cannot create {directory}: {ancestor} is not writable: {reason} "
                f"(make {ancestor} writable for uid {os.getuid()}, or set storage.path elsewhere)"
            ]
        return []
    if not directory.is_dir():
        return [f"storage.path: {directory} is not a directory (set storage.path elsewhere)"]
    reason = _cannot_write_in(directory)
    if reason:
        return [f"storage.path: {directory} is not writable: {reason} ({fix})"]
    if file.is_dir():
        return [f"storage.path: {file} is a directory (name a file, such as {file}/outbox.db)"]
    if file.exists():
        try:
            os.close(os.open(file, os.O_WRONLY))  # neither creates nor truncates
        except OSError as exc:
            return [f"storage.path: cannot write {file}: {exc.strerror} ({fix})"]
    return []


def _cannot_write_in(directory: Path) -> str | None:
    """Why no file can be created in `directory` (an OS error text), or None."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".amfeishu-write-check-", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(handle)
    os.unlink(probe)
    return None


def _readable(label: str, path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        return (
            f"{label}: cannot read {path}: {exc.strerror or exc} "
            f"(check the path, and that uid {os.getuid()} may read it)"
        )
    return None
