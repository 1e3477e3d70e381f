"""The template context: every name docs/templates.md documents, built from a notification.

Plain data and functions, nothing of Jinja: the safe card and tests use it too.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from functools import partial
from typing import Any

from amfeishu.cards.facts import (
    alertname,
    header_labels,
    key_labels,
    kind_of,
    mentions_markdown,
    target_mentions,
    title,
)
from amfeishu.cards.text import (
    alertmanager_url,
    as_time,
    base_url,
    between,
    local_time,
    md,
    md_oneline,
    md_url,
    plain,
    safe_url,
    silence_url_at,
    translate,
    truncate,
)
from amfeishu.config.types import Target
from amfeishu.models import Alert, Notification


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


_URL_KEYS = ("runbook", "dashboard", "source")
_LINK_KEYS = ("runbook", "dashboard", "source", "silence")


def context(
    n: Notification,
    target: Target,
    language: str,
    tz: tzinfo,
    compact: bool,
    omitted: int,
    now: datetime,
    app: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every name of docs/templates.md, except those of for_language()."""
    kind, severity = kind_of(n)
    ids = target_mentions(n, target, kind)
    subtitle = header_labels(n.group_labels, n.common_labels)
    base = base_url(n.external_url)
    limit = 1000 if len(n.alerts) == 1 else 300  # of description_text
    alerts = [_alert_view(a, base, tz, now, subtitle, limit) for a in n.alerts]
    firing = [a for a in alerts if a["firing"]]
    links = {}
    for key in _URL_KEYS:  # a card-level link when every alert has the same one
        urls = {a[f"{key}_url"] for a in alerts}
        links[key] = urls.pop() if len(urls) == 1 else ""
    links["silence"] = silence_url_at(base, _common([a["labels"] for a in firing]))
    links["alertmanager"] = alertmanager_url(n.external_url, n.receiver, n.group_labels)
    for view in alerts:
        own = {k: "" if view[f"{k}_url"] == links[k] else view[f"{k}_url"] for k in _URL_KEYS}
        own["silence"] = view["silence_url"] if view["firing"] and len(firing) > 1 else ""
        view["links"] = own
    return {
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": dict(n.common_labels),
        "commonAnnotations": dict(n.common_annotations),
        "externalURL": n.external_url,
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated_alerts,
        "alerts": alerts,
        "firing": firing,
        "resolved": [a for a in alerts if not a["firing"]],
        "severity": severity,
        "kind": kind,
        "alertname": alertname(n),
        "subtitle_labels": subtitle,
        "subtitle": " · ".join(f"{k}={v}" for k, v in subtitle.items()),
        "links": links,
        "target": target_view(target, language, tz),
        "compact": compact,
        "omitted": omitted,
        "mentions_md": mentions_markdown(ids),
        "mention_ids": ids,
        "extra": dict(n.extra),
        "app": app or {},  # an app target's state lines and callback buttons (cards/actions.py)
        "now": now,
        "silence_url": partial(_silence_for, base),
        "alertmanager_url": links["alertmanager"],
        "since": lambda value: between(value, now),
        "local_time": lambda value: local_time(value, tz),
        "alert_md_line": alert_md_line,
    }


def target_view(target: Target, language: str, tz: tzinfo) -> dict[str, str]:
    return {
        "name": target.name,
        "language": language,
        "timezone": str(tz),  # the one in effect
        "keyword": target.keyword or "",
        "msg_type": target.msg_type,
    }


def for_language(n: Notification, language: str, keyword: str | None) -> dict[str, Any]:
    """The names of the context that depend on the language ("zh" or "en")."""
    return {
        "language": language,
        "t": partial(translate, language),
        "title": title(n, language, keyword),
        "alert_md": partial(alert_md, language),
    }


def _silence_for(base: str, alert_or_labels: Any) -> str:
    labels = alert_or_labels
    if isinstance(labels, dict) and isinstance(labels.get("labels"), dict):
        labels = labels["labels"]
    if not isinstance(labels, dict):
        return ""
    return silence_url_at(base, {str(k): str(v) for k, v in labels.items()})


def _alert_view(
    a: Alert, base: str, tz: tzinfo, now: datetime, shown: dict[str, str], limit: int
) -> dict[str, Any]:
    annotations = a.annotations
    firing = a.status == "firing"
    summary = annotations.get("summary", "")
    description = annotations.get("description") or annotations.get("message", "")
    starts = as_time(a.starts_at)  # parsed once for the local time and the duration
    ends = None if firing else as_time(a.ends_at)
    view = a.to_dict()
    view.update(
        name=a.name,
        severity=a.severity.lower(),
        firing=firing,
        summary=summary,
        description=description,
        starts_at_local=local_time(starts, tz),
        ends_at_local="" if firing else local_time(ends, tz),
        duration=between(starts, now if firing else ends),
        silence_url=silence_url_at(base, a.labels),
        source_url=safe_url(a.generator_url),
        runbook_url=safe_url(annotations.get("runbook_url")),
        dashboard_url=safe_url(annotations.get("dashboard_url")),
        key_labels=key_labels(a.labels, shown),
        description_text=(
            truncate(plain(description), limit) if description and description != summary else ""
        ),
    )
    return view


def alert_md(language: str, a: dict[str, Any]) -> str:
    """The markdown of one alert (an item of alerts) in the built-in card.

    Its name and summary, key labels, start or end time and duration, and its
    own links, a line each; label and annotation text is md-escaped.
    """
    name, summary = a["name"], a["summary"]
    head = "**" + md_oneline(name, 80) + "**"
    if summary and summary != name:
        head += " · " + md_oneline(summary, 200)
    lines = [head]
    labels = a["key_labels"]
    if labels:
        shown = [md(k) + ": " + md_oneline(v, 80) for k, v in labels.items()]
        lines.append("<font color='grey'>" + " · ".join(shown) + "</font>")
    if a["firing"]:
        when, at, how = "started", a["starts_at_local"], "for"
    else:
        when, at, how = "ended", a["ends_at_local"], "lasted"
    line = translate(language, when) + " " + (at or "?")
    if a["duration"]:
        line += " · " + translate(language, how, d=a["duration"])
    lines.append("<font color='grey'>" + line + "</font>")
    links = a["links"]
    own = [f"[{translate(language, k)}]({md_url(links[k])})" for k in _LINK_KEYS if links[k]]
    if own:
        lines.append(" · ".join(own))
    return "\n".join(lines)


def alert_md_line(a: dict[str, Any]) -> str:
    """One alert as a markdown list item for compact cards: name, first key label, duration."""
    line = "- **" + md_oneline(a["name"], 60) + "**"
    key = next(iter(a["key_labels"].values()), "")
    if key:
        line += " · " + md_oneline(key, 60)
    if a["duration"]:
        line += " · " + a["duration"]
    return line
