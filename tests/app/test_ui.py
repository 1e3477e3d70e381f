"""The /ui playground through the ASGI app: pages, auth, and the render API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from amfeishu.app import build_app
from amfeishu.config.load import build_config
from amfeishu.service import Service
from amfeishu.ui import ui_routes
from tests.conftest import ROOT, SAMPLES

FIRING = json.loads((SAMPLES / "firing.json").read_text())
RESOLVED = json.loads((SAMPLES / "resolved.json").read_text())
CRITICAL = (ROOT / "templates/default/firing-critical.json.j2").read_text()
BASIC = {"Authorization": "Basic " + base64.b64encode(b"am:pw").decode()}


def client_for(data: dict[str, Any], *, ui: bool = True) -> Iterator[TestClient]:
    config = build_config({"storage": {"path": ":memory:"}, **data}, env={})
    service = Service.from_config(config)
    app = build_app(service, extra_routes=ui_routes(service) if ui else None)
    with TestClient(app) as client:
        client.service = service  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from client_for({"targets": {"ops": {"language": "en"}, "zh": {}}})


def render(client: TestClient, **body: Any) -> Any:
    body.setdefault("payload", FIRING)
    body.setdefault("target", "ops")
    return client.post("/ui/api/render", json=body)


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/ui/static/playground.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("playground.js", "text/javascript"), ("card.css", "text/css")):
        response = client.get(f"/ui/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
    assert client.get("/ui/static/..%2Fapp.py").status_code == 404
    assert client.get("/ui/static/secret.txt").json() == {"error": "no static file 'secret.txt'"}


def test_options_samples_and_template_source(client: TestClient) -> None:
    options = client.get("/ui/api/options").json()
    names = {s["name"] for s in options["samples"]}
    assert {"firing", "resolved", "group-mixed", "many-alerts", "cjk-hostile-firing"} <= names
    assert {"quotes-markup"} <= names
    ops = next(t for t in options["targets"] if t["name"] == "ops")
    assert ops["preview"] is True and "firing-critical.json.j2" in ops["files"]
    assert options["limit"] == 20_000
    assert client.get("/ui/api/samples/firing").json() == FIRING
    assert client.get("/ui/api/samples/nope").status_code == 404
    source = client.get("/ui/api/template", params={"target": "ops", "file": "resolved.json.j2"})
    assert source.json()["source"] == (ROOT / "templates/default/resolved.json.j2").read_text()
    missing = client.get("/ui/api/template", params={"target": "ops", "file": "../x.j2"})
    assert missing.status_code == 404 and "error" in missing.json()


def test_render_the_saved_template(client: TestClient) -> None:
    response = render(client)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["template"] == "default/firing-critical.json.j2"
    assert data["template_error"] is None
    assert data["message"]["card"]["header"]["template"] == "red"
    assert 'class="fs-header fs-header-red"' in data["html"]
    assert 0 < data["size"] < data["limit"] == 20_000
    resolved = render(client, payload=RESOLVED).json()
    assert resolved["template"] == "default/resolved.json.j2"


def test_render_an_edited_template_never_saves_it(client: TestClient) -> None:
    source = CRITICAL.replace('m.card("red", "red")', 'm.card("violet", "red")')
    data = render(client, file="firing-critical.json.j2", source=source).json()
    assert data["template_error"] is None
    assert data["message"]["card"]["header"]["template"] == "violet"
    assert "fs-header-violet" in data["html"]
    # nothing was written: the saved template still renders red
    assert render(client).json()["message"]["card"]["header"]["template"] == "red"
    # an edited helper changes the file the payload picks
    macros = (ROOT / "templates/default/_macros.j2").read_text()
    edited = macros.replace('"title": {{ text(', '"title": {{ text("已编辑 " ~ ')
    data = render(client, file="_macros.j2", source=edited).json()
    assert data["message"]["card"]["header"]["title"]["content"].startswith("已编辑 [FIRING:1]")
    assert data["template"] == "default/firing-critical.json.j2"


def test_broken_template_reports_the_line_and_the_safe_card(client: TestClient) -> None:
    broken = CRITICAL + "\n{% if %}\n"
    line = len(CRITICAL.splitlines()) + 2
    data = render(client, file="firing-critical.json.j2", source=broken).json()
    assert data["template"] == "builtin:safe"
    assert data["error_line"] == line
    assert f"default/firing-critical.json.j2:{line}:" in data["template_error"]
    assert data["message"]["card"]["header"]["template"] == "red"  # the safe card
    undefined = render(client, file="firing-critical.json.j2", source="{\n\n{{ nope.x }}").json()
    assert undefined["error_line"] == 3 and "'nope' is undefined" in undefined["template_error"]


def test_sandbox_refuses_unsafe_attribute_access(client: TestClient) -> None:
    source = '{"msg_type": "text", "content": {"text": "{{ t.__globals__ }}"}}'
    data = render(client, file="text.json.j2", source=source).json()
    assert data["template"] == "builtin:safe"
    assert "__globals__" in data["template_error"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"payload": FIRING, "target": "nope"}, 400, "target: unknown target 'nope'"),
        ({"payload": {"alerts": "x"}, "target": "ops"}, 400, "payload: "),
        ({"payload": FIRING, "target": "ops", "file": "x.j2", "source": "{}"}, 400, "file: "),
        ({"payload": FIRING, "target": "ops", "file": "../a.j2", "source": ""}, 400, "file: "),
        ({"payload": FIRING, "target": "ops", "file": "text.json.j2", "source": 1}, 400, "source"),
        ([1, 2], 400, "body must be an object"),
    ],
)
def test_bad_input_is_400_with_a_json_error(
    client: TestClient, body: Any, status: int, error: str
) -> None:
    response = client.post("/ui/api/render", json=body)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)


def test_render_wants_json(client: TestClient) -> None:
    response = client.post("/ui/api/render", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    broken = client.post(
        "/ui/api/render", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"].startswith("body is not JSON")


def test_hostile_payload_is_escaped_in_the_preview(client: TestClient) -> None:
    payload = json.loads(json.dumps(FIRING))
    payload["alerts"][0]["annotations"] = {
        "summary": "<script>alert(1)</script> <img src=x onerror=alert(2)>",
        "description": "[click](javascript:alert(3)) <at id=all></at>",
        "runbook_url": "javascript:alert(4)",
    }
    data = render(client, payload=payload).json()
    assert data["template_error"] is None
    html = data["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<img" not in html
    assert "javascript:" not in html.replace("[click](javascript:alert(3))", "")
    assert "fs-at" not in html  # the label's <at id=all> mentions nobody


def test_auth_applies_to_ui() -> None:
    for client in client_for(
        {"auth": {"basic_auth": {"username": "am", "password": "pw"}}, "targets": {"ops": {}}}
    ):
        for path in ("/ui", "/ui/static/playground.js", "/ui/api/options", "/ui/api/recent"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == 'Basic realm="amfeishu"'
            assert client.get(path, headers=BASIC).status_code == 200, path
        assert render(client).status_code == 401
        assert client.post("/ui/api/render", json={}, headers=BASIC).status_code == 400
    for client in client_for({"auth": {"bearer_token": "tok"}, "targets": {"ops": {}}}):
        response = client.get("/ui")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="amfeishu"'
        assert client.get("/ui", headers={"Authorization": "Bearer tok"}).status_code == 200


def test_ui_is_404_when_not_enabled() -> None:
    for client in client_for({"targets": {"ops": {}}}, ui=False):
        assert client.get("/ui").status_code == 404
        assert client.post("/ui/api/render", json={}).status_code == 404


def test_recent_cards_of_preview_targets(client: TestClient) -> None:
    assert client.get("/ui/api/recent").json() == []
    assert client.post("/alerts/ops", json=FIRING).status_code == 200
    service = client.service  # type: ignore[attr-defined]

    def arrived() -> list[Any]:
        return client.get("/ui/api/recent").json()

    cards = _wait(arrived)
    assert cards[0]["target"] == "ops"
    assert "fs-header-red" in cards[0]["html"]
    assert cards[0]["message"] == service.dispatcher.recent_cards[-1].message


def _wait(check: Any) -> Any:
    from tests.support.processes import wait_until

    return wait_until(check, 10, "a recent card")


def test_the_storm_digest_is_previewed_by_picking_storm_json(client: TestClient) -> None:
    many = json.loads((SAMPLES / "many-alerts.json").read_text())
    storm = (ROOT / "templates/default/storm.json.j2").read_text()
    data = render(client, payload=many, file="storm.json.j2", source=storm).json()
    assert data["template"] == "default/storm.json.j2" and data["template_error"] is None
    title = data["message"]["card"]["header"]["title"]["content"]
    assert title == f"[STORM] {len(many['alerts'])} alerts"
    assert "fs-card" in data["html"] and data["size"] < data["limit"]
    edited = storm.replace('"update_multi": true', '"update_multi": false')
    data = render(client, payload=many, file="storm.json.j2", source=edited).json()
    assert data["message"]["card"]["config"]["update_multi"] is False
    broken = render(client, payload=many, file="storm.json.j2", source="{{ oops").json()
    assert broken["template"] == "builtin:safe" and broken["error_line"] == 1
    assert broken["message"]["card"]["header"]["title"]["content"].startswith("[STORM]")


def test_an_app_targets_card_shows_its_buttons_that_call_back() -> None:
    app = {"app_id": "cli_a1b2c3", "app_secret": "s", "verification_token": "vt"}
    config = {
        "apps": {"oncall": app},
        "alertmanager": {"url": "http://127.0.0.1:9"},
        "targets": {"chat": {"app": "oncall", "chat_id": "oc_abc", "language": "en"}},
    }
    for client in client_for(config):
        options = client.get("/ui/api/options").json()
        assert options["targets"][0]["app"] is True
        data = render(client, target="chat").json()
        assert data["template_error"] is None
        values = [
            b["behaviors"][0]["value"]
            for e in data["message"]["card"]["body"]["elements"]
            if e.get("tag") == "column_set"
            for c in e["columns"]
            for b in c["elements"]
            if b["behaviors"][0]["type"] == "callback"
        ]
        actions = [v["action"] for v in values]
        assert actions == ["ack", "silence", "silence", "silence", "unsilence"]
        assert [v.get("duration") for v in values][1:4] == ["1h", "4h", "24h"]
        assert all(v["t"] == "chat" for v in values)
        assert "fs-btn-callback" in data["html"]
        assert "Acknowledged by" in json.dumps(data["message"])
