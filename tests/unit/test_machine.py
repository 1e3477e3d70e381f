"""What a config needs of this machine: storage writable, redis importable, TLS files readable.

The read-only filesystem case needs a mount: tests/e2e/test_startup.py has it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from amfeishu.config import machine
from amfeishu.config.load import build_config
from amfeishu.config.types import Config

UID = os.getuid()


def config(tmp_path: Path, **top: Any) -> Config:
    return build_config({"targets": {"ops": {}}, **top}, env={}, base_dir=tmp_path)


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file where a directory would have to be."""
    path = tmp_path / "blocker"
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize(
    "storage",
    [
        {"path": ":memory:"},
        {"path": "outbox.db"},  # beside the config
        {"path": "new/deeper/outbox.db"},  # directories that serve creates
        {"path": "blocker/outbox.db", "redis_url": "redis://127.0.0.1:6379/0"},  # path unused
    ],
)
def test_storage_that_works(tmp_path: Path, blocker: Path, storage: dict[str, str]) -> None:
    assert machine.check(config(tmp_path, storage=storage)) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "blocker/sub/outbox.db",
            "storage.path: cannot create {tmp}/blocker/sub: {tmp}/blocker is not a directory"
            " (set storage.path to a file in a writable directory)",
        ),
        (
            "blocker/outbox.db",
            "storage.path: {tmp}/blocker is not a directory (set storage.path elsewhere)",
        ),
        (
            "data",
            "storage.path: {tmp}/data is a directory (name a file, such as {tmp}/data/outbox.db)",
        ),
    ],
)
def test_storage_problems(tmp_path: Path, blocker: Path, path: str, expected: str) -> None:
    (tmp_path / "data").mkdir()
    problems = machine.check(config(tmp_path, storage={"path": path}))
    assert problems == [expected.format(tmp=tmp_path)]


def test_a_storage_check_leaves_nothing_behind(tmp_path: Path) -> None:
    assert machine.check(config(tmp_path, storage={"path": "outbox.db"})) == []
    assert list(tmp_path.iterdir()) == []


def test_make_storage_dir(tmp_path: Path) -> None:
    cfg = config(tmp_path, storage={"path": "a/b/outbox.db"})
    machine.make_storage_dir(cfg)
    assert (tmp_path / "a" / "b").is_dir()
    assert not (tmp_path / "a" / "b" / "outbox.db").exists()


def test_redis_package_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("redis", "redis.asyncio"):  # None in sys.modules: import fails
        monkeypatch.setitem(sys.modules, name, None)
    cfg = config(tmp_path, storage={"redis_url": "redis://127.0.0.1:6379/0"})
    assert machine.check(cfg) == [
        "storage.redis_url: the redis package cannot be imported: import of redis.asyncio"
        " halted; None in sys.modules (pip install 'amfeishu[redis]')"
    ]


def test_tls_files_of_the_config(tmp_path: Path) -> None:
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text("PEM")
    cfg = config(tmp_path, tls={"cert_file": "tls.crt", "key_file": "tls.key"})
    assert machine.check(cfg) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing.crt", "No such file or directory"), ("certs", "Is a directory")],
)
def test_tls_file_unreadable(tmp_path: Path, name: str, reason: str) -> None:
    (tmp_path / "certs").mkdir()
    path = str(tmp_path / name)
    problems = machine.check(config(tmp_path), [("--tls-cert-file", path)])
    assert problems == [
        f"--tls-cert-file: cannot read {path}: {reason}"
        f" (check the path, and that uid {UID} may read it)"
    ]


def test_every_problem_at_once(tmp_path: Path, blocker: Path) -> None:
    cfg = config(tmp_path, storage={"path": "blocker/x/outbox.db"})
    problems = machine.check(cfg, [("tls.cert_file", str(tmp_path / "gone.crt"))])
    assert [p.partition(":")[0] for p in problems] == ["storage.path", "tls.cert_file"]
