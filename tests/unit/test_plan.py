from __future__ import annotations

import json
from typing import Any

from amfeishu.backend.base import Entry
from amfeishu.cards import plan as assembly
from amfeishu.cards.plan import Queued
from amfeishu.cards.renderer import Renderer
from amfeishu.config.types import Target
from amfeishu.models import parse_notification
from tests.conftest import ROOT

TARGET = Target(name="ops", language="en")


def notification(alerts: int, description: str = "", group: str = "g") -> dict[str, Any]:
    body = json.loads((ROOT / "examples/firing.json").read_text())
    template = body["alerts"][0]
    body["groupKey"] = group
    body["alerts"] = [
        {
            **template,
            "labels": {**template["labels"], "alertname": f"A{group}-{i}"},
            "fingerprint": f"{group}{i:04d}",
            "annotations": {"summary": "s", "description": description},
        }
        for i in range(alerts)
    ]
    return body


def queued(entry_id: int, body: dict[str, Any]) -> Queued:
    entry = Entry(entry_id, "ops", body, "k", "t", 0.0)
    return Queued(entry, parse_notification(body))


def shown(card: assembly.Card) -> set[str]:
    return {a.name for a in card.notification.alerts}


def test_every_alert_lands_in_exactly_one_card_under_the_budget() -> None:
    items = [queued(1, notification(40, "x" * 600))]
    merged, groups, skipped = assembly.merge(items, send_resolved=True)
    assert merged is not None and not skipped
    cards = assembly.plan(merged, groups, TARGET, Renderer(), max_per_card=40, budget=1500)
    assert len(cards) > 1
    assert all(card.size <= 1500 for card in cards)
    names = [name for card in cards for name in shown(card)]
    assert sorted(names) == sorted(f"Ag-{i}" for i in range(40))
    assert assembly.union([c.covers for c in cards]) == {1: set(range(40))}


def test_max_alerts_per_card_is_respected() -> None:
    merged, groups, _ = assembly.merge([queued(1, notification(25))], send_resolved=True)
    assert merged is not None
    cards = assembly.plan(merged, groups, TARGET, Renderer(), max_per_card=10)
    assert [len(c.notification.alerts) for c in cards] == [10, 10, 5]


def test_huge_annotations_are_trimmed_to_fit() -> None:
    merged, groups, _ = assembly.merge([queued(1, notification(1, "y" * 50_000))], True)
    assert merged is not None
    [card] = assembly.plan(merged, groups, TARGET, Renderer(), max_per_card=30)
    assert card.size <= 20_000
    assert "Ag-0" in json.dumps(card.message)


def test_one_alert_too_big_alone_goes_out_as_the_minimal_safe_card() -> None:
    merged, groups, _ = assembly.merge([queued(1, notification(1, "y" * 5000))], True)
    assert merged is not None
    [card] = assembly.plan(merged, groups, TARGET, Renderer(), max_per_card=30, budget=900)
    assert card.safe
    assert "Ag-0" in json.dumps(card.message)


def test_merge_keeps_the_newest_state_of_each_alert_and_covers_both() -> None:
    first = notification(2, group="g")
    later = json.loads(json.dumps(first))
    later["alerts"][0]["status"] = "resolved"
    merged, groups, _ = assembly.merge([queued(1, first), queued(2, later)], True)
    assert merged is not None
    assert len(merged.alerts) == 2
    states = {a.name: a.status for a in merged.alerts}
    assert states == {"Ag-0": "resolved", "Ag-1": "firing"}
    assert assembly.union(groups) == {1: {0, 1}, 2: {0, 1}}


def test_digest_of_different_groups_and_resolved_skipped_when_unwanted() -> None:
    a, b = notification(1, group="a"), notification(1, group="b")
    b["alerts"][0]["status"] = "resolved"
    merged, _, skipped = assembly.merge([queued(1, a), queued(2, b)], send_resolved=False)
    assert merged is not None
    assert [x.name for x in merged.alerts] == ["Aa-0"]
    assert skipped == {2: {0}}
    assert merged.group_key.startswith("digest:")
