"""`amfeishu serve` as a real process delivering to a Feishu-like server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import payload
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import ROOT, Amfeishu, run_cli, wait_until

SECRET = "SEC-e2e-signing-secret"
TOKEN = "bearer-e2e-token"


def header(card_message: dict) -> dict:
    return card_message["card"]["header"]


def test_firing_then_resolved_arrive_as_signed_cards(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    hook = feishu.add_bot("ops-token", secret=SECRET)
    config = write_config(
        {
            "auth": {"bearer_token": TOKEN},
            "targets": {"ops": {"webhook": hook, "secret": SECRET, "language": "en"}},
        }
    )
    server = serve(config)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    start = time.monotonic()
    assert server.post("/alerts/ops", payload("firing.json"), headers=auth).status_code == 200
    [firing] = feishu.wait_count("ops-token", 1)
    receipt_to_delivery = time.monotonic() - start
    assert firing["msg_type"] == "interactive"
    assert firing["card"]["schema"] == "2.0"
    assert header(firing)["template"] == "red"
    assert "HighCPU" in json.dumps(firing, ensure_ascii=False)
    assert isinstance(firing["timestamp"], str) and firing["sign"]  # verified by the fake

    assert server.post("/alerts/ops", payload("resolved.json"), headers=auth).status_code == 200
    resolved = feishu.wait_count("ops-token", 2)[1]
    assert header(resolved)["template"] == "green"
    assert feishu.refusals == []
    # Secrets never reach the log.
    logs = server.logs()
    assert SECRET not in logs and "ops-token" not in logs and TOKEN not in logs
    print(f"receipt to delivery: {receipt_to_delivery * 1000:.0f} ms")


def test_routes_split_a_notification_by_labels(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    data = payload("group-firing.json")
    pods = [a["labels"]["pod"] for a in data["alerts"]]
    config = write_config(
        {
            "targets": {
                "first": {"webhook": feishu.add_bot("first")},
                "rest": {"webhook": feishu.add_bot("rest")},
            },
            "routes": [
                {"matchers": [f'pod="{pods[0]}"'], "targets": ["first"]},
                {"matchers": ['severity=~"warning|critical"'], "targets": ["rest"]},
            ],
        }
    )
    server = serve(config)
    response = server.post("/alerts", data)
    assert response.status_code == 200, response.text
    assert response.json()["targets"] == {"first": 1, "rest": len(pods) - 1}
    [first] = feishu.wait_count("first", 1)
    [rest] = feishu.wait_count("rest", 1)
    assert pods[0] in json.dumps(first) and pods[1] not in json.dumps(first)
    assert all(p in json.dumps(rest) for p in pods[1:]) and pods[0] not in json.dumps(rest)


def test_receiver_answers_follow_alertmanagers_retry_rule(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    config = write_config(
        {"auth": {"bearer_token": TOKEN}, "targets": {"ops": {"webhook": feishu.add_bot("t")}}}
    )
    server = serve(config)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = server.url
    cases = [
        (httpx.post(f"{url}/alerts/ops", json=payload("firing.json")), 401),
        (
            httpx.post(
                f"{url}/alerts/ops",
                json=payload("firing.json"),
                headers={"Authorization": "Bearer wrong"},
            ),
            401,
        ),
        (httpx.post(f"{url}/alerts/nope", json=payload("firing.json"), headers=auth), 404),
        (httpx.post(f"{url}/alerts/ops", content=b"hello", headers=auth), 400),
        (httpx.post(f"{url}/alerts/ops", content=b"\xff\xfe{", headers=auth), 400),
        (httpx.post(f"{url}/alerts/ops", content=b"[" * 100_000, headers=auth), 400),
        (httpx.post(f"{url}/alerts/ops", content=b"x" * (2 << 20), headers=auth), 413),
        (httpx.post(f"{url}/alerts/ops", json={"alerts": [{"labels": 5}]}, headers=auth), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert "error" in response.json()
    assert httpx.get(f"{url}/-/healthy").status_code == 200
    assert "amfeishu_build_info" in httpx.get(f"{url}/metrics").text
    assert feishu.received == []


def test_embedded_default_preview_logs_the_card(
    tmp_path: Path, serve: Callable[..., Amfeishu]
) -> None:
    env = {"AMFEISHU_STORAGE": str(tmp_path / "outbox.db"), "FEISHU_WEBHOOK": ""}
    server = serve(None, env=env)
    assert server.post("/alerts/default", payload("firing.json")).status_code == 200
    wait_until(lambda: "preview card" in server.logs(), 10, "the preview card in the log")
    assert '"schema": "2.0"' in server.logs() or '"schema":"2.0"' in server.logs()


def test_sigterm_stops_cleanly(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    server = serve(write_config({"targets": {"ops": {"webhook": feishu.add_bot("t")}}}))
    assert server.stop() == 0


def test_check_config_names_every_problem(tmp_path: Path) -> None:
    templates = tmp_path / "templates" / "default"
    templates.mkdir(parents=True)
    (templates / "firing-critical.json.j2").write_text('{"msg_type": "interactive", {% if %}')
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "templates: {dir: templates}\n"
        "targets:\n  ops:\n    webhok: https://open.feishu.cn/open-apis/bot/v2/hook/x\n"
        "    secret: ${UNSET_FOR_TEST}\n"
        "routes:\n  - matchers: ['severity=~\"(\"']\n    targets: [ops]\n"
    )
    result = run_cli("check-config", str(bad))
    assert result.returncode == 1
    err = result.stderr
    assert "targets.ops.webhok: unknown key (did you mean 'webhook'?)" in err
    assert "environment variable UNSET_FOR_TEST is not set" in err
    assert "routes[0].matchers[0]" in err and "invalid regular expression" in err
    assert "firing-critical.json.j2" in err

    good = tmp_path / "good.yml"
    good.write_text("targets:\n  ops: {language: en}\n")
    result = run_cli("check-config", str(good))
    assert result.returncode == 0, result.stderr


def test_render_prints_the_card_and_sends_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("targets:\n  ops: {language: en}\n")
    result = run_cli(
        "render",
        "--config",
        str(config),
        "--target",
        "ops",
        str(ROOT / "examples/group-mixed.json"),
    )
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout)
    assert card["card"]["header"]["template"] == "orange"


def test_send_delivers_once_and_prints_the_answer(feishu: FakeFeishu, tmp_path: Path) -> None:
    hook = feishu.add_bot("tok-9f3a", secret=SECRET)
    config = tmp_path / "c.yml"
    config.write_text(f"targets:\n  ops: {{webhook: '{hook}', secret: '{SECRET}'}}\n")
    result = run_cli(
        "send",
        "--config",
        str(config),
        "--target",
        "ops",
        "--severity",
        "critical",
        "--title",
        "backup failed",
        stdin="disk full on db1\n",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "delivered"
    [message] = feishu.wait_count("tok-9f3a", 1)
    assert "disk full on db1" in json.dumps(message, ensure_ascii=False)

    wrong = tmp_path / "wrong.yml"
    wrong.write_text(f"targets:\n  ops: {{webhook: '{hook}', secret: 'not-it'}}\n")
    result = run_cli(
        "send", "--config", str(wrong), "--target", "ops", "--title", "x", "--text", "y"
    )
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["code"] == 19021 and answer["fix"]
    assert "tok-9f3a" not in result.stdout + result.stderr
