from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def payload(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture
def feishu() -> Iterator[FakeFeishu]:
    fake = FakeFeishu().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(data: dict[str, Any], name: str = "amfeishu.yml") -> Path:
        data = {"storage": {"path": str(tmp_path / "outbox.db")}, **data}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return path

    return write


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Amfeishu]]:
    started: list[Amfeishu] = []

    def start(config: Path | None, **kwargs: Any) -> Amfeishu:
        wait = kwargs.pop("wait", True)
        kwargs.setdefault("log_path", tmp_path / f"amfeishu-{len(started)}.log")
        server = Amfeishu(config, **kwargs)
        started.append(server)
        return server.start(wait=wait)

    yield start
    for server in started:
        server.stop()
