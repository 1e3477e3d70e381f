"""Storm digests: thousands of alerts named compactly, grouped by alert name and severity.

When a target's backlog is more than its bot can send in about ten seconds,
cards name every alert in as few bytes as it takes to find it again: one
line per group of alerts that share name, severity and status (a count and
an Alertmanager link), then the label values that tell its alerts apart
(`instance`, `pod`, …), so the chat's search finds any host. Alerts alone
in their group share one line per severity, each named with its alert name
and first key label. docs/templates.md ("Storm digests") documents the
context that storm.json.j2 gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from amfeishu.cards.facts import KEY_LABELS, highest_severity
from amfeishu.cards.text import alertmanager_url, md, md_url, oneline, translate, truncate
from amfeishu.models import SEVERITY_ORDER, Alert, Notification

NAME_LENGTH = 60  # characters of one alert's name in a digest
_HIDDEN = frozenset({"alertname", "severity"})


@dataclass
class StormGroup:
    """Alerts of one name, severity and status, each named by what tells it apart."""

    alertname: str  # '' for the line of alerts alone in their group
    severity: str
    firing: bool
    names: list[str] = field(default_factory=list)
    url: str = ""  # Alertmanager's list of these alerts

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class StormAlert:
    """One alert of a digest: the group it goes in and its name there."""

    group: tuple[int, int, str, str]  # order: firing first, severity, name; then the key
    name: str
    index: int  # of the alert in the notification


def storm_alerts(alerts: Sequence[Alert]) -> list[StormAlert]:
    """Every alert with its group and compact name, in the order digests list them."""
    by_group: dict[tuple[bool, str, str], list[tuple[int, Alert]]] = {}
    for i, a in enumerate(alerts):
        by_group.setdefault((a.firing, a.severity.lower(), a.name), []).append((i, a))
    out: list[StormAlert] = []
    singles: dict[tuple[bool, str], list[tuple[int, Alert]]] = {}
    for (firing, severity, name), members in by_group.items():
        rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 9
        if len(members) == 1:  # alone: on the severity's shared line (below)
            singles.setdefault((firing, severity), []).extend(members)
            continue
        keys = _telling_apart([a for _, a in members])
        for index, a in members:
            label = "/".join(a.labels.get(k, "") for k in keys) or a.fingerprint[:8]
            group = (0 if firing else 1, rank, name, severity)
            out.append(StormAlert(group, truncate(oneline(label), NAME_LENGTH), index))
    for (firing, severity), members in singles.items():
        rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 9
        apart = _telling_apart([a for _, a in members])[:1]  # the host, pod, … it is about
        for index, a in members:
            key = a.labels.get(apart[0], "") if apart else ""
            label = f"{a.name} {key}" if key else a.name
            group = (0 if firing else 1, rank, "", severity)
            out.append(StormAlert(group, truncate(oneline(label), NAME_LENGTH), index))
    out.sort(key=lambda s: s.group)  # stable: each group keeps its alerts' order
    return out


def groups_of(chosen: Sequence[StormAlert], n: Notification) -> list[StormGroup]:
    """The digest's groups for some storm alerts (already in digest order)."""
    groups: list[StormGroup] = []
    for item in chosen:
        firing, _, name, severity = item.group
        if not groups or (groups[-1].firing, groups[-1].alertname, groups[-1].severity) != (
            firing == 0,
            name,
            severity,
        ):
            matchers = {"alertname": name} if name else {}
            if severity:
                matchers["severity"] = severity
            url = alertmanager_url(n.external_url, n.receiver, matchers)
            groups.append(StormGroup(name, severity, firing == 0, [], url))
        groups[-1].names.append(item.name)
    return groups


def group_markdown(language: str, group: StormGroup) -> str:
    """A group as markdown: its head line (name · severity · count · link), then its names."""
    return group_head(language, group) + "\n" + names_markdown(group)


def names_markdown(group: StormGroup) -> str:
    return md(", ".join(group.names))


def group_head(language: str, group: StormGroup) -> str:
    """name · severity · count · link: the only words of a group that have a language."""
    if group.alertname:
        head = "**" + md(truncate(oneline(group.alertname), 80)) + "**"
    else:
        head = "**" + translate(language, "storm_singles") + "**"
    parts = [head]
    if group.severity:
        parts.append(md(translate(language, group.severity)))
    if not group.firing:
        parts.append(translate(language, "resolved_section"))
    parts.append("×" + str(group.count))
    if group.url:
        parts.append(f"[Alertmanager]({md_url(group.url)})")
    return " · ".join(parts)


def storm_context(
    n: Notification, groups: list[StormGroup], language: str, backlog: int
) -> dict[str, Any]:
    """The names storm.json.j2 gets besides target, language, t and now."""
    firing = sum(g.count for g in groups if g.firing)
    resolved = sum(g.count for g in groups if not g.firing)
    severity = highest_severity(g.severity for g in groups if g.firing) or (
        "resolved" if not firing else ""
    )
    title = translate(language, "storm_title", n=firing + resolved)
    return {
        "storm": {
            "groups": [
                {
                    "alertname": g.alertname,
                    "severity": g.severity,
                    "firing": g.firing,
                    "count": g.count,
                    "names": g.names,
                    "url": g.url,
                    "head": group_head(language, g),
                    "names_md": names_markdown(g),
                    "markdown": group_markdown(language, g),
                }
                for g in groups
            ],
            "total": firing + resolved,
            "firing": firing,
            "resolved": resolved,
            "backlog": backlog,
            "alertmanager_url": alertmanager_url(n.external_url, n.receiver, {}),
        },
        "title": title,
        "kind": severity if severity in (*SEVERITY_ORDER, "resolved") else "default",
        "severity": severity if severity in SEVERITY_ORDER else "",
        "extra": dict(n.extra),
    }


def _telling_apart(alerts: list[Alert]) -> list[str]:
    """The labels whose values differ among alerts: key labels first, at most two."""
    varying = {k for a in alerts for k in a.labels if k not in _HIDDEN}
    varying = {k for k in varying if len({a.labels.get(k) for a in alerts}) > 1}
    ordered = [k for k in KEY_LABELS if k in varying] + sorted(varying - set(KEY_LABELS))
    chosen: list[str] = []
    for key in ordered:
        chosen.append(key)
        if len({tuple(a.labels.get(k, "") for k in chosen) for a in alerts}) == len(alerts):
            break
        if len(chosen) == 2:
            break
    return chosen
