"""`amfeishu send` for an app target: one card through the app's Open API, recorded so
that a later delivery of the group updates it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.feishu_openapi_fake import FakeOpenAPI
from tests.support.processes import run_cli

APP_ID, SECRET, CHAT = "cli_send0001", "app-secret-value", "oc_send"


@pytest.fixture
def feishu() -> Iterator[FakeOpenAPI]:
    fake = FakeOpenAPI().start()
    fake.add_app(APP_ID, SECRET)
    try:
        yield fake
    finally:
        fake.stop()


def test_send_posts_one_card_through_the_app(feishu: FakeOpenAPI, tmp_path: Path) -> None:
    config = tmp_path / "amfeishu.yml"
    app = {"app_id": APP_ID, "app_secret": SECRET, "domain": feishu.base_url}
    data = {
        "storage": {"path": str(tmp_path / "outbox.db")},
        "apps": {"oncall": {**app, "verification_token": "vt"}},
        "targets": {"chat": {"app": "oncall", "chat_id": CHAT, "language": "en"}},
    }
    config.write_text(yaml.safe_dump(data))
    done = run_cli(
        "send", "--config", str(config), "--target", "chat",
        "--title", "backup failed", "--severity", "critical", "--text", "disk full",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["outcome"] == "delivered", answer
    [message] = feishu.sent(CHAT)
    assert message.msg_type == "interactive"
    card = json.dumps(message.body, ensure_ascii=False)
    assert "backup failed" in card and '"type": "callback"' in card
    assert SECRET not in done.stdout + done.stderr
