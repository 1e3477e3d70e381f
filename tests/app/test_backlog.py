"""A worker holds a bounded window of its backlog in memory; the rest waits in the outbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from amfeishu import dispatcher
from amfeishu import worker as worker_module
from amfeishu.app import build_app
from amfeishu.config.load import build_config
from amfeishu.service import Service
from tests.conftest import ROOT
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import wait_until


def notification(i: int) -> dict:
    body = json.loads((ROOT / "examples/firing.json").read_text())
    body["groupKey"] = f"g{i}"
    alert = body["alerts"][0]
    alert["labels"] = {**alert["labels"], "alertname": f"Backlog-{i}"}
    alert["fingerprint"] = f"{i:016x}"
    return body


def test_backlog_beyond_the_window_waits_in_the_outbox_and_all_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher, "MAX_IN_MEMORY", 3)
    monkeypatch.setattr(worker_module, "MAX_IN_MEMORY", 3)
    monkeypatch.setattr(dispatcher, "POLL_INTERVAL", 0.2)
    with FakeFeishu() as feishu:
        hook = feishu.add_bot("ops", per_second=100, per_minute=1000)
        feishu.set_down(True, close=True)
        config = build_config(
            {
                "storage": {"path": str(tmp_path / "outbox.db")},
                "targets": {"ops": {"webhook": hook}},
            },
            env={},
        )
        service = Service.from_config(config)
        with TestClient(build_app(service)) as client:
            for i in range(10):
                assert client.post("/alerts/ops", json=notification(i)).status_code == 200
            worker = service.dispatcher._workers["ops"]  # type: ignore[union-attr]
            assert len(worker.queue) <= 3
            wait_until(
                lambda: 'amfeishu_outbox_depth{target="ops"} 10.0' in client.get("/metrics").text,
                10,
                "the depth gauge to count what waits in storage",
            )
            feishu.set_down(False)

            def delivered() -> set[str]:
                text = json.dumps([m for m in feishu.messages("ops")])
                return {f"Backlog-{i}" for i in range(10) if f"Backlog-{i}" in text}

            wait_until(lambda: len(delivered()) == 10, 60, "all 10 notifications")
            assert len(worker.queue) <= 3
