"""The receiver through the ASGI app: statuses follow Alertmanager's retry rule."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from amfeishu.app import build_app
from amfeishu.backend.base import StorageError
from amfeishu.config.load import build_config
from amfeishu.service import Service
from tests.conftest import ROOT

FIRING = json.loads((ROOT / "examples/firing.json").read_text())
TOKEN = "s3cret-bearer"


def client_for(data: dict[str, Any]) -> Iterator[TestClient]:
    config = build_config({"storage": {"path": ":memory:"}, **data}, env={})
    service = Service.from_config(config)
    with TestClient(build_app(service, body_limit=64 * 1024)) as client:
        client.service = service  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from client_for(
        {
            "auth": {"bearer_token": TOKEN, "basic_auth": {"username": "am", "password": "pw"}},
            "targets": {"ops": {}, "db": {}},
            "routes": [{"matchers": ['job="db"'], "targets": ["db"]}],
        }
    )


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_bearer_and_basic_auth(client: TestClient) -> None:
    basic = base64.b64encode(b"am:pw").decode()
    wrong = base64.b64encode(b"am:nope").decode()
    assert client.post("/alerts/ops", json=FIRING, headers=AUTH).status_code == 200
    assert (
        client.post(
            "/alerts/ops", json=FIRING, headers={"Authorization": f"Basic {basic}"}
        ).status_code
        == 200
    )
    for header in ("", "Bearer", "Bearer x", f"Basic {wrong}", "Basic !!!", f"Token {TOKEN}"):
        response = client.post("/alerts/ops", json=FIRING, headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "body is empty"),
        (b"alertname=HighCPU", 400, "body is not JSON"),
        (b"\xff\xfe\x00", 400, "body is not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, 400, "nests too deeply"),
        (b'{"alerts": "x"}', 400, "alerts: must be a list"),
        (b'{"alerts": [{"status": "firing", "labels": {"a": null}}]}', 400, "alerts[0].labels.a"),
        (b"1e99999", 400, "must be a JSON object"),
        (b'"' + b"x" * 60_000 + b'"', 400, "must be a JSON object"),
        (b"x" * 70_000, 413, "more than the limit"),
    ],
)
def test_bad_bodies_get_4xx_naming_the_problem(
    client: TestClient, body: bytes, status: int, message: str
) -> None:
    # Content-Type is ignored on purpose: people test with plain `curl -d`.
    response = client.post(
        "/alerts/ops",
        content=body,
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == status
    assert message in response.json()["error"]


def test_oversized_body_is_refused_from_its_declared_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"{" * 10
        raise AssertionError("the body must not be read")  # pragma: no cover

    response = client.post(
        "/alerts/ops", content=chunks(), headers={**AUTH, "Content-Length": str(10 << 20)}
    )
    assert response.status_code == 413


def test_unknown_target_is_404(client: TestClient) -> None:
    response = client.post("/alerts/nope", json=FIRING, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "unknown target 'nope'"}


def test_routing_reports_targets_and_unrouted(client: TestClient) -> None:
    response = client.post("/alerts", json=FIRING, headers=AUTH)
    assert response.json() == {"status": "queued", "targets": {}, "unrouted_alerts": 1}
    db = json.loads(json.dumps(FIRING))
    db["alerts"][0]["labels"]["job"] = "db"
    assert client.post("/alerts", json=db, headers=AUTH).json()["targets"] == {"db": 1}
    metrics = client.get("/metrics").text
    assert "amfeishu_alerts_unrouted_total 1.0" in metrics


def test_notify_endpoint_takes_plain_events(client: TestClient) -> None:
    ok = client.post(
        "/api/v1/notify/ops", json={"title": "deploy done", "severity": "info"}, headers=AUTH
    )
    assert ok.status_code == 200 and ok.json()["targets"] == {"ops": 1}
    bad = client.post("/api/v1/notify/ops", json={"title": "x", "severity": "huge"}, headers=AUTH)
    assert bad.status_code == 400 and "severity" in bad.json()["error"]


def test_outbox_failure_is_503_so_alertmanager_retries(client: TestClient) -> None:
    service = client.service  # type: ignore[attr-defined]

    async def broken(items: Any) -> Any:
        raise StorageError("disk full")

    service.backend.outbox.put = broken
    response = client.post("/alerts/ops", json=FIRING, headers=AUTH)
    assert response.status_code == 503
    assert "retry later" in response.json()["error"]


def test_health_ready_and_traceparent(client: TestClient) -> None:
    assert client.get("/-/healthy").status_code == 200
    assert client.get("/-/ready").status_code == 200
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = client.post("/alerts/ops", json=FIRING, headers={**AUTH, "traceparent": parent})
    assert response.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")


def test_reload_without_config_file_is_refused(client: TestClient) -> None:
    response = client.post("/-/reload", headers=AUTH)
    assert response.status_code == 500
    assert "without --config" in response.json()["error"]
    assert client.post("/-/reload").status_code == 401
