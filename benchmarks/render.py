"""Rendering a 30-alert default card (Renderer.render) against a JSON round trip of the
same webhook payload (json.loads(json.dumps(payload)))."""

from __future__ import annotations

import json
import timeit
from typing import Any

from amfeishu.cards.renderer import Renderer
from amfeishu.config.load import build_config
from amfeishu.models import parse_notification
from benchmarks.payloads import notification
from benchmarks.report import Row

ALERTS = 30
GOAL = 10.0


def per_call(fn: Any, seconds: float = 1.0) -> float:
    """Best of 5 timings, each at least ~`seconds`/5 long; seconds per call."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 5 / 0.2))
    return min(timer.repeat(repeat=5, number=number)) / number


def run(notes: list[str]) -> list[Row]:
    payload = notification("KubePodCrashLooping", ALERTS)
    n = parse_notification(payload)
    hook = "https://open.feishu.cn/open-apis/bot/v2/hook/bench"
    config = build_config({"targets": {"ops": {"webhook": hook}}}, env={})
    target = config.targets["ops"]
    renderer = Renderer()  # built-in templates, zh, Asia/Shanghai: the defaults
    rendered = renderer.render(n, target)
    assert rendered.error is None, rendered.error
    card = per_call(lambda: renderer.render(n, target))
    compact = per_call(lambda: renderer.render(n, target, compact=True))
    round_trip = per_call(lambda: json.loads(json.dumps(payload)))
    ratio = card / round_trip
    size = len(json.dumps(rendered.message, ensure_ascii=False).encode())
    notes.append(
        f"Render: {rendered.template}, {ALERTS} alerts, {size:,}-byte card; compact form"
        f" (one line per alert, what the dispatcher uses above 10 alerts)"
        f" {compact * 1e3:.2f} ms = {compact / round_trip:.0f}x the round trip."
    )
    return [
        Row(
            f"Render a {ALERTS}-alert default card / JSON round trip of its payload",
            f"{card * 1e3:.2f} ms / {round_trip * 1e3:.3f} ms = {ratio:.0f}x",
            f"≤ {GOAL:.0f}x",
            ratio <= GOAL,
        )
    ]
