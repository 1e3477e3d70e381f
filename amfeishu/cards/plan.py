"""Queued notifications → cards: merge, chunk, render, and keep each body under Feishu's limit.

Every alert of every queued notification ends up in some card: a chunk too
big for one body is rendered compact, then split in halves, and a single
alert too big even alone goes out as the minimal safe card.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from amfeishu.backend.base import Entry
from amfeishu.cards.actions import group_id
from amfeishu.cards.facts import alertname, highest_severity
from amfeishu.cards.renderer import Renderer
from amfeishu.cards.storm import StormAlert, groups_of, storm_alerts
from amfeishu.config.types import Target
from amfeishu.feishu.webhook import MAX_BODY_BYTES, body_size
from amfeishu.models import Alert, Notification, parse_stored

COMPACT_ABOVE = 10  # more alerts than this in one card: one line each
APP_CARD_BYTES = 30_000  # an app's card: 30 KB (a custom bot's body is 20 KB)
STORM_FIRST_GUESS = 300  # alerts in the first digest tried; later ones start from the last
STORM_FILL = 0.97  # aim a little under the budget: names differ in length
STORM_TRIES = 8


@dataclass(slots=True, eq=False)
class Queued:
    """An outbox entry waiting in a worker, with what of it was already delivered.

    It holds the entry's stored bytes; the parsed notification exists only once a
    batch has asked for it (a waiting notification costs its bytes, not its objects).
    """

    entry: Entry
    parsed: Notification | None = None  # entry.body parsed, on first use
    alerts: int = 0  # how many alerts it holds, known without parsing
    delivered: set[int] = field(default_factory=set)  # alert indexes already in a sent card
    deduped: bool = False  # dedup already decided for this entry
    safe_only: bool = False  # Feishu refused its card once: send the safe card

    def __post_init__(self) -> None:
        if not self.alerts:
            self.alerts = len(self.notification.alerts)

    @property
    def notification(self) -> Notification:
        if self.parsed is None:
            self.parsed = parse_stored(self.entry.body)  # checked when it was queued
        return self.parsed

    @property
    def remaining(self) -> list[tuple[int, Alert]]:
        return [(i, a) for i, a in enumerate(self.notification.alerts) if i not in self.delivered]


Covers = dict[int, set[int]]  # entry id → alert indexes a card conveys


@dataclass(frozen=True)
class Group:
    """The alert group an app card stands for (one card per group, updated in place)."""

    key: str  # Alertmanager's groupKey
    id: str  # its short id (cards/actions.group_id)
    payload: dict[str, Any]  # the group's latest notification, to render it again on a click
    resolved: bool  # no alert of the group fires
    severity: str  # the highest firing severity
    title: str  # for the replies under the card


@dataclass
class Card:
    message: dict[str, Any]
    notification: Notification
    covers: Covers
    groups: list[Covers]  # per shown alert, what it conveys (for re-splitting)
    template_error: str | None = None
    safe: bool = False
    digest: bool = False  # a storm digest (storm.json.j2)
    group: Group | None = None  # app targets: the alert group this card is

    @property
    def size(self) -> int:
        return body_size(self.message)


def merge(
    items: list[Queued], send_resolved: bool
) -> tuple[Notification | None, list[Covers], Covers]:
    """One notification with one line per alert identity, latest state winning.

    Returns the merged notification, what each of its alerts conveys, and what
    needs no card (resolved alerts of a target that does not want them).
    """
    latest: dict[str, tuple[Alert, Covers]] = {}
    skipped: Covers = {}
    for item in items:
        for index, alert in item.remaining:
            if not alert.firing and not send_resolved:
                skipped.setdefault(item.entry.id, set()).add(index)
                continue
            key = alert.fingerprint or repr(sorted(alert.labels.items()))
            _, covers = latest.pop(key, (None, {}))
            covers.setdefault(item.entry.id, set()).add(index)
            latest[key] = (alert, covers)  # re-insert: order follows the newest state
    if not latest:
        return None, [], skipped
    ordered = sorted(latest.values(), key=lambda pair: not pair[0].firing)  # firing first
    alerts = [a for a, _ in ordered]
    base = items[0].notification if len(items) == 1 else _digest_base(items)
    notification = (
        base.with_alerts(alerts) if len(items) > 1 or alerts != list(base.alerts) else base
    )
    return notification, [c for _, c in ordered], skipped


def _digest_base(items: list[Queued]) -> Notification:
    """Several notifications merged while the target waited (grouping window, throttling)."""
    first = items[0].notification
    keys = {i.notification.group_key for i in items}
    if len(keys) == 1:
        return items[-1].notification
    shared = dict(first.group_labels)
    for item in items[1:]:
        shared = {k: v for k, v in shared.items() if item.notification.group_labels.get(k) == v}
    return replace(
        first,
        group_key="digest:" + ",".join(sorted(keys))[:200],
        group_labels=shared,
        external_url=next(
            (i.notification.external_url for i in items if i.notification.external_url), ""
        ),
        truncated_alerts=sum(i.notification.truncated_alerts for i in items),
    )


def union(groups: list[Covers]) -> Covers:
    out: Covers = {}
    for group in groups:
        for entry_id, indexes in group.items():
            out.setdefault(entry_id, set()).update(indexes)
    return out


def plan(
    notification: Notification,
    groups: list[Covers],
    target: Target,
    renderer: Renderer,
    *,
    max_per_card: int,
    safe: bool = False,
    budget: int = MAX_BODY_BYTES,
) -> list[Card]:
    """Cards for a merged notification, each at most `max_per_card` alerts and `budget` bytes."""
    alerts = list(notification.alerts)
    cards: list[Card] = []
    step = max(1, max_per_card)
    for start in range(0, len(alerts), step):
        chunk = slice(start, start + step)
        cards.extend(
            _fit(
                notification,
                alerts[chunk],
                groups[chunk],
                len(alerts),
                target,
                renderer,
                safe,
                budget,
            )
        )
    return cards


def _fit(
    base: Notification,
    alerts: list[Alert],
    groups: list[Covers],
    total: int,
    target: Target,
    renderer: Renderer,
    safe: bool,
    budget: int,
) -> list[Card]:
    part = base if len(alerts) == len(base.alerts) else base.with_alerts(alerts)
    omitted = total - len(alerts)
    compact_options = [True] if len(alerts) > COMPACT_ABOVE else [False, True]
    for compact in compact_options:
        card = _render(part, groups, target, renderer, safe, compact, omitted)
        if card.size <= budget:
            return [card]
    if len(alerts) > 1:
        half = len(alerts) // 2
        return _fit(
            base, alerts[:half], groups[:half], total, target, renderer, safe, budget
        ) + _fit(base, alerts[half:], groups[half:], total, target, renderer, safe, budget)
    # One alert whose annotations alone exceed the limit: the minimal safe card.
    minimal = renderer.safe_message(part, target, compact=True, omitted=omitted, reason="too large")
    return [Card(minimal, part, union(groups), groups, "card too large", safe=True)]


def _render(
    part: Notification,
    groups: list[Covers],
    target: Target,
    renderer: Renderer,
    safe: bool,
    compact: bool,
    omitted: int,
) -> Card:
    if safe:  # Feishu refused this card's template once: say so on the card
        reason = "refused by Feishu"
        message = renderer.safe_message(
            part, target, compact=compact, omitted=omitted, reason=reason
        )
        return Card(message, part, union(groups), groups, None, safe=True)
    rendered = renderer.render(part, target, compact=compact, omitted=omitted)
    return Card(
        rendered.message,
        part,
        union(groups),
        groups,
        rendered.error,
        safe=rendered.error is not None,
    )


def split(card: Card, target: Target, renderer: Renderer) -> list[Card]:
    """Feishu said too large although we measured less: its alerts in two halves, each
    smaller than the refused card; a half refused again is split again. Halving the
    byte budget instead fails where a card's frame alone is near half of it (a card per
    alert, each the minimal one)."""
    alerts = list(card.notification.alerts)
    total, smaller = len(alerts), card.size - 1
    if total == 1:  # nothing to halve: the minimal card, or dead when that is refused too
        return _fit(card.notification, alerts, card.groups, 1, target, renderer, card.safe, 0)
    half = total // 2
    base, groups, safe = card.notification, card.groups, card.safe
    return _fit(base, alerts[:half], groups[:half], total, target, renderer, safe, smaller) + _fit(
        base, alerts[half:], groups[half:], total, target, renderer, safe, smaller
    )


def storm(
    notification: Notification,
    groups: list[Covers],
    target: Target,
    renderer: Renderer,
    *,
    backlog: int,
    safe: bool = False,
    budget: int = MAX_BODY_BYTES,
) -> list[Card]:
    """Storm digests naming every alert once, each filled up to `budget` bytes.

    Digests are packed greedily in digest order: a card is measured, then
    grown or shrunk by the bytes an alert took, a few renders per card.
    """
    named = storm_alerts(notification.alerts)
    cards: list[Card] = []
    start, guess = 0, STORM_FIRST_GUESS
    while start < len(named):
        left = len(named) - start
        best: tuple[int, Card] | None = None
        k = min(guess, left)
        for _ in range(STORM_TRIES):
            card = _digest(
                notification, named[start : start + k], groups, target, renderer, backlog, safe
            )
            if card.size <= budget:
                best = (k, card)
                grown = min(left, int(k * budget * STORM_FILL / card.size))
                if k == left or grown <= k:
                    break
                k = grown
            else:
                smaller = min(k - 1, int(k * budget * STORM_FILL / card.size))
                floor = best[0] if best else 0
                if smaller <= floor:
                    break
                k = max(1, smaller)
        if best is None:  # one name alone over the budget cannot happen (names are cut short)
            best = (k, card)
        taken, chosen = best
        cards.append(chosen)
        start += taken
        guess = taken
    return cards


def _digest(
    base: Notification,
    chosen: list[StormAlert],
    groups: list[Covers],
    target: Target,
    renderer: Renderer,
    backlog: int,
    safe: bool,
) -> Card:
    part = base.with_alerts([base.alerts[s.index] for s in chosen])
    covers = [groups[s.index] for s in chosen]
    rendered = renderer.render_storm(
        part, groups_of(chosen, base), target, backlog=backlog, safe=safe
    )
    card = Card(rendered.message, part, union(covers), covers, rendered.error)
    card.safe = safe or rendered.error is not None
    card.digest = True
    return card


def by_group(items: list[Queued]) -> list[list[Queued]]:
    """Queued notifications split by alert group, groups in order of arrival."""
    out: dict[str, list[Queued]] = {}
    for q in items:
        out.setdefault(q.notification.group_key, []).append(q)
    return list(out.values())


def group_card(
    items: list[Queued],
    target: Target,
    renderer: Renderer,
    app: dict[str, Any],
    *,
    safe: bool = False,
    budget: int = APP_CARD_BYTES,
    trace: str = "",
) -> tuple[Card | None, Covers]:
    """One app card for the notifications of one alert group, and what needs no card.

    The card stands for the whole group: alerts that do not fit are counted
    ("N more in Alertmanager") rather than sent as a second card.
    """
    notification, groups, skipped = merge(items, target.send_resolved)
    if notification is None:
        return None, skipped
    if trace:  # the footer shows it, to find the card in the logs
        notification = replace(notification, extra={**notification.extra, "trace_id": trace})
    latest = items[-1].notification
    card = fit_group(notification, target, renderer, app, groups=groups, safe=safe, budget=budget)
    firing = [a for a in notification.alerts if a.firing]
    severity = highest_severity(a.severity for a in firing)
    title = alertname(notification)
    payload = latest.with_alerts(notification.alerts).to_dict()
    card.group = Group(
        latest.group_key, group_id(latest.group_key), payload, not firing, severity, title
    )
    return card, skipped


def fit_group(
    notification: Notification,
    target: Target,
    renderer: Renderer,
    app: dict[str, Any],
    *,
    groups: list[Covers] | None = None,
    safe: bool = False,
    budget: int = APP_CARD_BYTES,
) -> Card:
    """The group's one card within `budget`: compact past COMPACT_ABOVE alerts, then
    fewer alerts shown and the rest counted."""
    alerts = list(notification.alerts)
    groups = groups if groups is not None else [{} for _ in alerts]
    shown = len(alerts)
    card: Card | None = None
    while shown >= 1:
        part = notification if shown == len(alerts) else notification.with_alerts(alerts[:shown])
        for compact in [False, True] if shown <= COMPACT_ABOVE else [True]:
            omitted = len(alerts) - shown
            card = _render_app(part, groups, target, renderer, app, compact, omitted, safe)
            if card.size <= budget:
                return card
        shown //= 2
    assert card is not None, "a group card needs at least one alert"
    return card


def _render_app(
    part: Notification,
    groups: list[Covers],
    target: Target,
    renderer: Renderer,
    app: dict[str, Any],
    compact: bool,
    omitted: int,
    safe: bool,
) -> Card:
    covers = union(groups)  # the card conveys every alert of the group, shown or counted
    if safe:
        message = renderer.safe_message(part, target, compact=compact, omitted=omitted)
        return Card(message, part, covers, groups, None, safe=True)
    rendered = renderer.render(part, target, compact=compact, omitted=omitted, app=app)
    error = rendered.error
    return Card(rendered.message, part, covers, groups, error, safe=error is not None)
