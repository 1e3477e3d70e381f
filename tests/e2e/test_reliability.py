"""Nothing lost, nothing doubled, never throttled (issue #3), with real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import payload
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import ROOT, Amfeishu, wait_until

NAME = re.compile(r"Storm-\d+-\d+(?![\d-])")


def storm(notifications: int, alerts: int, annotation: str = "") -> list[dict[str, Any]]:
    """Distinct notifications (own groupKey), each with distinct alerts."""
    bodies = []
    for i in range(notifications):
        body = payload("firing.json")
        body["groupKey"] = f'{{}}:{{alertname="Storm-{i}"}}'
        body["groupLabels"] = {"batch": str(i)}
        template = body["alerts"][0]
        body["alerts"] = []
        for j in range(alerts):
            alert = json.loads(json.dumps(template))
            alert["labels"] = {
                **alert["labels"],
                "alertname": f"Storm-{i}-{j}",
                "instance": f"n{j}",
            }
            alert["fingerprint"] = f"{i:08x}{j:08x}"
            if annotation:
                alert["annotations"] = {"summary": f"storm {i}-{j}", "description": annotation}
            body["alerts"].append(alert)
        body["commonLabels"] = {"severity": "critical"}
        bodies.append(body)
    return bodies


def conveyed(messages: list[dict[str, Any]]) -> Counter[str]:
    """How many cards mention each storm alert name."""
    seen: Counter[str] = Counter()
    for message in messages:
        seen.update(set(NAME.findall(json.dumps(message, ensure_ascii=False))))
    return seen


def ops_config(write_config: Callable[..., Path], hook: str, **extra: Any) -> Path:
    return write_config({"targets": {"ops": {"webhook": hook, "language": "en"}}, **extra})


def test_kill_9_after_accepting_a_storm_loses_nothing(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    hook = feishu.add_bot("ops")
    config = ops_config(write_config, hook)
    feishu.set_down(True, close=True)  # Feishu unreachable while the storm is accepted
    server = serve(config)
    for body in storm(200, 5):
        assert server.post("/alerts/ops", body).status_code == 200
    server.kill()  # kill -9: no shutdown, no flush
    feishu.set_down(False)
    restarted = serve(config)
    expected = {f"Storm-{i}-{j}" for i in range(200) for j in range(5)}
    wait_until(lambda: set(conveyed(feishu.messages("ops"))) >= expected, 120, "all 1,000 alerts")
    wait_until(lambda: restarted.metric("amfeishu_outbox_depth") == 0, 30, "an empty outbox")
    seen = conveyed(feishu.messages("ops"))
    lost = expected - set(seen)
    doubled = {name: n for name, n in seen.items() if n > 1}
    print(
        f"kill -9: alerts lost {len(lost)}, alerts in more than one card {len(doubled)}, "
        f"cards {len(feishu.messages('ops'))}"
    )
    assert not lost and not doubled
    assert [r for r in feishu.refused(token="ops") if r.reason != "down"] == []


def test_feishu_errors_for_a_while_then_fine(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    hook = feishu.add_bot("ops")
    server = serve(ops_config(write_config, hook))
    feishu.fail_for(2.0, http_status=500)
    for body in storm(3, 1):
        assert server.post("/alerts/ops", body).status_code == 200
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == 3, 60, "3 alerts after the outage")
    # Feishu's rate-limit answers: 9499 "too many request" (HTTP 400) and 11232 (HTTP 200).
    feishu.fail_next(1, http_status=400, code=9499, msg="too many request")
    feishu.fail_next(1, http_status=200, code=11232, msg="frequency limited psm[x]")
    for body in storm(6, 1)[3:]:
        assert server.post("/alerts/ops", body).status_code == 200
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == 6, 60, "3 more after throttling")
    assert max(conveyed(feishu.messages("ops")).values()) == 1
    assert server.metric("amfeishu_delivery_attempts_total", result="retry") >= 2


def test_a_storm_stays_inside_the_bot_limits(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    hook = feishu.add_bot("ops")  # the fake refuses beyond 5/s and 100/min
    server = serve(ops_config(write_config, hook))
    bodies = storm(200, 5)
    start = time.monotonic()
    for body in bodies:
        assert server.post("/alerts/ops", body).status_code == 200
    accepted = time.monotonic() - start
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == 1000, 120, "all 1,000 alerts")
    drained = time.monotonic() - start
    cards = len(feishu.messages("ops"))
    refusals = feishu.refused(token="ops")
    print(
        f"storm: 1000 alerts in 200 notifications accepted in {accepted:.1f}s, "
        f"{cards} cards, {len(refusals)} refusals, drained in {drained:.1f}s"
    )
    assert refusals == []
    assert cards < 100
    assert max(conveyed(feishu.messages("ops")).values()) == 1


def test_duplicates_from_an_ha_pair_give_one_card(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    server = serve(ops_config(write_config, feishu.add_bot("ops")))
    firing = payload("firing.json")
    again = json.loads(json.dumps(firing))
    again["alerts"][0]["endsAt"] = "2026-11-28T14:00:00Z"  # Alertmanager moves endsAt; same alert
    assert server.post("/alerts/ops", firing).status_code == 200
    assert server.post("/alerts/ops", again).status_code == 200
    assert server.post("/alerts/ops", payload("resolved.json")).status_code == 200
    feishu.wait_count("ops", 2)
    wait_until(
        lambda: server.metric("amfeishu_notifications_total", outcome="deduplicated") == 1,
        10,
        "the duplicate counted",
    )
    colours = [m["card"]["header"]["template"] for m in feishu.messages("ops")]
    assert colours == ["red", "green"]


@pytest.mark.parametrize("per_card", [30, 300])
def test_a_huge_notification_is_split_under_the_size_limit(
    per_card: int,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    grouping = {"grouping": {"max_alerts_per_card": per_card}}
    server = serve(ops_config(write_config, feishu.add_bot("ops"), **grouping))
    [body] = storm(1, 300, annotation="very long description " * 40)
    assert server.post("/alerts/ops", body).status_code == 200
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == 300, 60, "all 300 alerts")
    sizes = [r.size for r in feishu.received if r.token == "ops"]
    print(f"300 alerts: {len(sizes)} cards, largest {max(sizes)} bytes")
    assert max(sizes) <= 20_000
    assert feishu.refused(token="ops") == []


def test_broken_template_and_refused_card_still_deliver(
    tmp_path: Path,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    user = tmp_path / "templates" / "default"
    user.mkdir(parents=True)
    (user / "firing-warning.json.j2").write_text(
        '{"msg_type": "interactive", "card": {{ nope.x }}}'
    )
    hook = feishu.add_bot("ops")
    config = write_config(
        {
            "templates": {"dir": str(tmp_path / "templates")},
            "targets": {"ops": {"webhook": hook, "language": "en"}},
        }
    )
    # check-config catches it before deploy...
    check = subprocess.run(
        [sys.executable, "-m", "amfeishu", "check-config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1 and "firing-warning.json.j2" in check.stderr
    # ...but if it reaches production anyway (serve refuses to start with it, so we start
    # clean and break the file afterwards), the alert still gets through as the safe card.
    (user / "firing-warning.json.j2").unlink()
    server = serve(config)
    (user / "firing-warning.json.j2").write_text(
        '{"msg_type": "interactive", "card": {{ nope.x }}}'
    )
    assert server.post("/alerts/ops", payload("group-firing.json")).status_code == 200
    feishu.wait_count("ops", 1)
    feishu.fail_next(1, http_status=200, code=9499, msg="Bad Request")
    assert server.post("/alerts/ops", payload("firing.json")).status_code == 200
    messages = feishu.wait_count("ops", 2)
    assert "HighCPU" in json.dumps(messages[1])
    assert server.metric("amfeishu_delivery_attempts_total", result="bad_card") == 1


def test_permanent_failure_is_a_dead_letter_that_can_be_replayed(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    hook = feishu.url_for("not-yet")  # unknown token: 19001, permanent
    config = ops_config(write_config, hook)
    server = serve(config)
    assert server.post("/alerts/ops", payload("firing.json")).status_code == 200
    wait_until(
        lambda: server.metric("amfeishu_notifications_total", outcome="dead") == 1,
        20,
        "the dead letter",
    )
    assert "19001" in server.logs() and "fix:" in server.logs()

    def outbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amfeishu", "outbox", *args, "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = outbox("list")
    assert listed.returncode == 0 and "\tops\t" in listed.stdout
    assert "not-yet" not in listed.stdout
    feishu.add_bot("not-yet")  # the operator fixes the cause
    assert outbox("replay", "--all").returncode == 0
    [card] = feishu.wait_count("not-yet", 1, timeout=20)
    assert "HighCPU" in json.dumps(card)
    assert outbox("list").stdout.strip() == ""


def test_sigterm_leaves_the_rest_queued(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    hook = feishu.add_bot("ops")
    config = ops_config(write_config, hook)
    feishu.set_down(True, close=True)
    server = serve(config)
    for body in storm(3, 1):
        assert server.post("/alerts/ops", body).status_code == 200
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 15
    feishu.set_down(False)
    serve(config)
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == 3, 30, "the queued alerts")


def test_a_19036_answer_splits_the_card_and_every_alert_arrives(
    feishu: FakeFeishu, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    server = serve(ops_config(write_config, feishu.add_bot("ops")))
    feishu.fail_next(1, http_status=200, code=19036, msg="The message exceeds the size limit")
    [body] = storm(1, 8)
    assert server.post("/alerts/ops", body).status_code == 200
    wait_until(lambda: len(conveyed(feishu.messages("ops"))) == 8, 30, "all 8 alerts")
    assert [r.code for r in feishu.refused(token="ops")] == [19036]  # then re-rendered smaller
    assert max(conveyed(feishu.messages("ops")).values()) == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"body": b"<!DOCTYPE html><html><body><h1>Gateway login</h1></body></html>"}, "not_json"),
        ({"code": 12345, "msg": "a code Feishu added tomorrow"}, "unknown_code"),
    ],
)
def test_answers_we_cannot_read_are_retried_until_feishu_answers_normally(
    fault: dict[str, Any],
    reason: str,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    server = serve(ops_config(write_config, feishu.add_bot("ops")))
    feishu.fail_next(3, http_status=200, token="ops", **fault)  # then it answers normally
    assert server.post("/alerts/ops", payload("firing.json")).status_code == 200
    [card] = feishu.wait_count("ops", 1, timeout=60)
    assert "HighCPU" in json.dumps(card)
    assert [r.http_status for r in feishu.refused(token="ops")] == [200, 200, 200]
    wait_until(
        lambda: server.metric("amfeishu_notifications_total", outcome="delivered") == 1,
        10,
        "the delivery counted",
    )
    assert server.metric("amfeishu_delivery_attempts_total", result="retry", reason=reason) == 3
    assert server.metric("amfeishu_notifications_total", outcome="dead") == 0
    assert server.metric("amfeishu_outbox_depth") == 0
