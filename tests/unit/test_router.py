from __future__ import annotations

import json

from amfeishu.config.types import Route
from amfeishu.matchers import parse_matcher
from amfeishu.models import parse_notification
from amfeishu.router import route, targets_for
from tests.conftest import ROOT


def r(matchers: list[str], targets: list[str], cont: bool = False) -> Route:
    return Route(tuple(parse_matcher(m) for m in matchers), tuple(targets), cont)


ROUTES = (
    r(['severity="critical"'], ["pager"], cont=True),
    r(['team=~"db|infra"'], ["db"]),
    r(['team="payments"'], ["payments"]),
    r([], ["catchall"]),
)


def test_first_match_wins_unless_continue() -> None:
    assert targets_for({"severity": "critical", "team": "db"}, ROUTES) == ["pager", "db"]
    assert targets_for({"severity": "warning", "team": "db"}, ROUTES) == ["db"]
    assert targets_for({"severity": "critical", "team": "web"}, ROUTES) == ["pager", "catchall"]
    assert targets_for({"team": "payments"}, ROUTES) == ["payments"]
    assert targets_for({}, ROUTES) == ["catchall"]


def test_unmatched_alerts_are_reported() -> None:
    n = parse_notification(json.loads((ROOT / "examples/group-firing.json").read_text()))
    routed = route(n, (r(['pod="nope"'], ["x"]),))
    assert routed.per_target == {}
    assert len(routed.unmatched) == len(n.alerts)


def test_notification_split_per_target_each_with_its_own_alerts() -> None:
    n = parse_notification(json.loads((ROOT / "examples/group-mixed.json").read_text()))
    pods = [a.labels["pod"] for a in n.alerts]
    routes = (r([f'pod="{pods[0]}"'], ["a"]), r([], ["b"]))
    routed = route(n, routes)
    assert [a.labels["pod"] for a in routed.per_target["a"].alerts] == [pods[0]]
    assert [a.labels["pod"] for a in routed.per_target["b"].alerts] == pods[1:]
    assert routed.per_target["a"].status == n.alerts[0].status
    assert not routed.unmatched
