"""A storm: 10,000 alerts in 200 notifications within 10 s to one bot that enforces
Feishu's real limits (5/s, 100/min). Cards in the first minute, refusals, alerts
conveyed, time to drain, and amfeishu's memory idle and at its peak."""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import procs
from benchmarks.payloads import notification
from benchmarks.report import Row
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import wait_until

NOTIFICATIONS = 200
ALERTS = 50  # per notification: 10,000 in all
SECONDS = 10.0
DRAIN_DEADLINE = 480.0
NAME = re.compile(r"Storm-\d+-\d+(?![\d-])")
GOAL_CARDS = 30
GOAL_LAST_AFTER_END = 30.0  # seconds from the storm's end until every alert was shown
GOAL_IDLE_MB = 60
GOAL_STORM_MB = 120


def _bodies() -> list[bytes]:
    return [
        json.dumps(
            notification(f"Storm-{i}", ALERTS, names=[f"Storm-{i}-{j}" for j in range(ALERTS)])
        ).encode()
        for i in range(NOTIFICATIONS)
    ]


class _Conveyed:
    """Alert names seen in cards so far, reading each new card once."""

    def __init__(self, fake: FakeFeishu) -> None:
        self.fake, self.seen, self.read = fake, set[str](), 0

    def __call__(self) -> int:
        received = list(self.fake.received)
        for r in received[self.read :]:
            self.seen.update(NAME.findall(json.dumps(r.body)))
        self.read = len(received)
        return len(self.seen)


def run(notes: list[str], per_card: int | None = None) -> tuple[list[Row], dict[str, float]]:
    """Rows for one storm; per_card None = the default grouping.max_alerts_per_card (30)."""
    label = f"max_alerts_per_card {per_card}" if per_card else "default 30 alerts/card"
    total = NOTIFICATIONS * ALERTS
    bodies = _bodies()
    with tempfile.TemporaryDirectory(prefix="amfeishu-bench-") as tmp, FakeFeishu() as fake:
        directory = Path(tmp)
        extra: dict[str, Any] = {"grouping": {"max_alerts_per_card": per_card}} if per_card else {}
        targets = {"storm": {"webhook": fake.add_bot("storm"), "language": "en"}}
        config = procs.write_config(directory, targets, **extra)
        with procs.amfeishu(config, directory) as server:
            pid = server.proc.pid  # type: ignore[union-attr]
            idle = procs.rss(pid)
            peak_rss = [idle["VmRSS"]]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.2):
                    peak_rss.append(procs.rss(pid)["VmRSS"])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.monotonic()
            with httpx.Client(timeout=30) as client:
                for i, body in enumerate(bodies):
                    time.sleep(max(0.0, start + i * SECONDS / NOTIFICATIONS - time.monotonic()))
                    response = client.post(
                        f"{server.url}/alerts/storm",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    assert response.status_code == 200, response.text
            accepted = time.monotonic() - start
            conveyed = _Conveyed(fake)
            wait_until(lambda: conveyed() == total, DRAIN_DEADLINE, "every alert", interval=0.5)
            drained = max(r.at for r in fake.received) - start
            after_end = drained - accepted
            wait_until(lambda: server.metric("amfeishu_outbox_depth") == 0, 30, "empty outbox")
            done.set()
            sampler.join()
            peak = procs.rss(pid)
            cards = len(fake.received)
            first_minute = sum(1 for r in fake.received if r.at - start <= 60)
            refusals = len(fake.refused(token="storm"))
            largest = max(r.size for r in fake.received)
            oversized = sum(1 for r in fake.received if r.size > 20_000)
    notes.append(
        f"Storm ({label}): {total:,} alerts in {NOTIFICATIONS} notifications accepted in"
        f" {accepted:.1f} s; {cards} cards, largest {largest:,} bytes; the last card"
        f" {drained:.1f} s after the first request; peak VmRSS sampled"
        f" {max(peak_rss):.0f} MB."
    )
    never = total - len(conveyed.seen)
    rows = [
        Row(
            f"Storm ({label}): cards sent (in the first minute)",
            f"{cards} ({first_minute})",
            f"≤ {GOAL_CARDS}" if per_card is None else "",  # the goal is the default config's
            cards <= GOAL_CARDS if per_card is None else None,
        ),
        Row(
            f"Storm ({label}): from the storm's end until every alert was shown",
            f"{after_end:.1f} s",
            f"≤ {GOAL_LAST_AFTER_END:.0f} s",
            after_end <= GOAL_LAST_AFTER_END,
        ),
        Row(
            f"Storm ({label}): refusals / bodies over 20 KB / alerts never shown",
            f"{refusals} / {oversized} / {never}",
            "0 / 0 / 0",
            refusals == 0 and oversized == 0 and never == 0,
        ),
    ]
    memory = {"idle_rss": idle["VmRSS"], "idle_hwm": idle["VmHWM"], "storm_hwm": peak["VmHWM"]}
    return rows, memory
