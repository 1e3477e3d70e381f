"""What a notification is about, as cards show it: kind and severity, the alert name,
the title, key labels and who to mention."""

from __future__ import annotations

import re
from typing import Any

from amfeishu.cards.text import oneline, translate, truncate
from amfeishu.config.types import EMAIL, OPEN_ID, Target
from amfeishu.models import SEVERITY_ORDER, Notification

# kind (template file) → (header colour, severity tag colour)
KIND_COLOURS = {
    "critical": ("red", "red"),
    "warning": ("orange", "orange"),
    "info": ("blue", "blue"),
    "resolved": ("green", "neutral"),
    "default": ("grey", "neutral"),
}
# Labels worth showing on a card, in display order; the rest stay in Alertmanager.
KEY_LABELS = (
    "cluster", "namespace", "instance", "job", "service", "pod", "container", "node",
    "deployment", "statefulset", "daemonset", "persistentvolumeclaim", "mountpoint",
    "device", "host", "hostname", "endpoint", "env", "environment", "region",
)  # fmt: skip
_HIDDEN_LABELS = frozenset({"alertname", "severity"})


def highest_severity(severities: Any) -> str:
    present = {str(s).lower() for s in severities}
    return next((s for s in SEVERITY_ORDER if s in present), "")


def key_labels(labels: dict[str, str], skip: dict[str, str], limit: int = 6) -> dict[str, str]:
    """The KEY_LABELS present in labels, minus those already shown in skip."""
    out: dict[str, str] = {}
    for key in [k for k in KEY_LABELS if k in labels]:
        if len(out) >= limit:
            break
        if skip.get(key) != labels[key]:
            out[key] = labels[key]
    return out


def header_labels(group: dict[str, str], common: dict[str, str], limit: int = 4) -> dict[str, str]:
    """Labels for the header subtitle: the group's (but alertname), else common key labels."""
    shown = {k: v for k, v in group.items() if k not in _HIDDEN_LABELS}
    if not shown:
        shown = key_labels(common, {}, limit)
    return dict(list(shown.items())[:limit])


_SPLIT_IDS = re.compile(r"[\s,;，、]+")


def mention_ids(configured: Any, alerts: Any, label: str, *, emails: bool = False) -> list[str]:
    """Ids to @: configured ("all" or open_ids) then the mention label of alerts, deduplicated.

    Everything is validated: only "all" (from config) and ^ou_…$ ids pass (and
    emails, for app targets, whose cards take <at email=…>), so a label can
    neither @all nor smuggle markup into the <at> tag.
    """

    def valid(item: str) -> bool:
        return bool(OPEN_ID.fullmatch(item) or (emails and EMAIL.fullmatch(item)))

    ids: list[str] = []
    for item in configured or ():
        item = str(item).strip()
        if item == "all" or valid(item):
            ids.append(item)
    for alert in alerts if label else ():
        for source in (alert.labels, alert.annotations):
            for token in _SPLIT_IDS.split(source.get(label, "")):
                if valid(token):
                    ids.append(token)
    return list(dict.fromkeys(ids))


def mentions_markdown(ids: list[str]) -> str:
    return " ".join(f"<at email={i}></at>" if "@" in i else f"<at id={i}></at>" for i in ids)


def kind_of(n: Notification) -> tuple[str, str]:
    """(kind, severity): kind picks the file and colours, severity names the tag.

    kind is "resolved" when no alert fires, else the highest known severity
    of the firing alerts, else "default". severity is the highest known one
    of the firing alerts (all alerts when none fires), else the first
    severity label seen, else ''.
    """
    firing = n.firing
    alerts = firing or list(n.alerts)
    known = highest_severity(a.severity for a in alerts)
    severity = known or next((a.severity.lower() for a in alerts if a.severity), "")
    if not firing:
        return "resolved", severity
    return (known or "default"), severity


def alertname(n: Notification) -> str:
    name = n.group_labels.get("alertname") or n.common_labels.get("alertname")
    if name:
        return name
    names = list(dict.fromkeys(a.name for a in n.alerts if a.name))
    return truncate(", ".join(names), 60) if names else n.receiver


def title(n: Notification, language: str, keyword: str | None) -> str:
    """[FIRING:2] HighCPU / [告警:2] HighCPU / [RESOLVED] … with the keyword in front."""
    if n.firing:
        head = f"[{translate(language, 'firing')}:{len(n.firing)}]"
    else:
        head = f"[{translate(language, 'resolved')}]"
    text = f"{head} {oneline(alertname(n))}"
    return f"{keyword} {text}" if keyword and keyword not in text else text


def target_mentions(n: Notification, target: Target, kind: str) -> list[str]:
    emails = target.app is not None
    return mention_ids(target.mentions.get(kind, ()), n.firing, target.mention_label, emails=emails)
