"""What each command of `amfeishu` does; argument parsing is in __main__.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from amfeishu.config import machine
from amfeishu.config.load import embedded_default, load_config, load_raw
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import AppDelivery, Config
from amfeishu.events import parse_event
from amfeishu.feishu.answers import Answer, Outcome
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.models import PayloadError, parse_notification
from amfeishu.ratelimit import Unlimited
from amfeishu.sinks import WebhookSink


def _fail(message: str, code: int = 1) -> int:
    print(f"amfeishu: {message}", file=sys.stderr)
    return code


def _config(paths: list[str] | None) -> Config:
    return load_config(paths) if paths else embedded_default()


def serve(args: argparse.Namespace) -> int:
    from amfeishu.serving import serve as run_server

    return run_server(args)


def check_config(args: argparse.Namespace) -> int:
    """Every problem of the config, its templates, and what it needs of this machine."""
    from amfeishu import generation

    try:
        config = generation.build(lambda: load_config(args.path)).config
        problems, source = machine.check(config), config.source
    except ConfigError as exc:
        problems, source = exc.problems, exc.source
        if exc.partial is not None:  # the machine's problems too, unless a key has one already
            named = {problem.partition(":")[0] for problem in problems}
            more = machine.check(exc.partial)
            problems += [p for p in more if p.partition(":")[0] not in named]
    if problems:
        for problem in problems:
            print(f"{source}: {problem}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    if args.print_config:
        from amfeishu.config.redact import masked_yaml

        print(masked_yaml(load_raw(args.path)), end="")
    names = ", ".join(config.targets)
    print(
        f"OK: {len(config.targets)} target(s) ({names}), {len(config.routes)} route(s)",
        file=sys.stderr,
    )
    return 0


def _read_payload(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return json.loads(text)


def render(args: argparse.Namespace) -> int:
    from amfeishu.generation import renderer_for

    try:
        config = load_config(args.config)
        notification = parse_notification(_read_payload(args.payload))
    except ConfigError as exc:
        return _fail(str(exc))
    except (OSError, json.JSONDecodeError, PayloadError) as exc:
        return _fail(f"{args.payload}: {exc}")
    target = config.targets.get(args.target)
    if target is None:
        return _fail(f"unknown target {args.target!r} (known: {', '.join(config.targets)})")
    if args.storm:
        return _render_storm(notification, target, renderer_for(config), html=args.html)
    rendered = renderer_for(config).render(notification, target)
    if rendered.error:
        print(
            f"amfeishu: template failed, showing the safe card: {rendered.error}", file=sys.stderr
        )
    if args.html:
        from amfeishu.cards.html import card_html

        print(card_html(rendered.message, title=f"{target.name}: {rendered.template}"))
    else:
        print(json.dumps(rendered.message, ensure_ascii=False, indent=2))
    return 0 if rendered.error is None else 1


def _render_storm(notification: Any, target: Any, renderer: Any, *, html: bool) -> int:
    """What a storm sends for these alerts: the digests, filled up to the size limit."""
    from amfeishu.cards import plan

    groups = [{0: {i}} for i in range(len(notification.alerts))]
    cards = plan.storm(notification, groups, target, renderer, backlog=len(notification.alerts))
    errors = [c.template_error for c in cards if c.template_error]
    for error in dict.fromkeys(errors):
        print(f"amfeishu: template failed, showing the safe digest: {error}", file=sys.stderr)
    if html:
        from amfeishu.cards.html import card_html

        for i, card in enumerate(cards, 1):
            print(card_html(card.message, title=f"{target.name}: storm digest {i}/{len(cards)}"))
    else:
        print(json.dumps([c.message for c in cards], ensure_ascii=False, indent=2))
    return 1 if errors else 0


def _event_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """--title/--text/--severity/--label, the text read from stdin when piped in."""
    text = args.text
    if text is None and not sys.stdin.isatty():
        text = sys.stdin.read()
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PayloadError(f"--label must be KEY=VALUE, got {item!r}")
        labels[key] = value
    event: dict[str, Any] = {"title": args.title or "", "text": text or "", "labels": labels}
    if args.severity:
        event["severity"] = args.severity
    if args.link:
        event["url"] = args.link
    return event


def send(args: argparse.Namespace) -> int:
    try:
        if args.payload:
            body = _read_payload(args.payload)
            notification = parse_notification(body)
        else:
            body = _event_from_args(args)
            notification = parse_event(body)
    except (OSError, json.JSONDecodeError, PayloadError) as exc:
        return _fail(str(exc))
    if args.url:
        return _send_to_server(args, body, event=not args.payload)
    try:
        config = _config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    target = config.targets.get(args.target)
    if target is None:
        return _fail(f"unknown target {args.target!r} (known: {', '.join(config.targets)})")
    from amfeishu.cards import plan
    from amfeishu.generation import renderer_for

    renderer = renderer_for(config)
    if target.app is not None:
        return asyncio.run(_send_app(config, target, target.app, notification, renderer))
    groups = [{0: {i}} for i in range(len(notification.alerts))]
    cards = plan.plan(
        notification, groups, target, renderer, max_per_card=config.grouping.max_alerts_per_card
    )
    webhook = target.webhook
    if webhook is None:
        for card in cards:
            print(json.dumps(card.message, ensure_ascii=False, indent=2))
        return _fail(f"target {target.name!r} has no webhook (preview): printed, not sent")

    async def deliver() -> int:
        client = FeishuClient(timeout=config.delivery.timeout)
        sink = WebhookSink(client, webhook, target.secret, Unlimited())
        worst = 0
        try:
            for card in cards:
                answer = await sink.send(card)
                _print_answer(answer)
                if answer.outcome is not Outcome.DELIVERED:
                    worst = 1
        finally:
            await client.aclose()
        return worst

    return asyncio.run(deliver())


def _print_answer(answer: Answer) -> None:
    shown = {
        "outcome": answer.outcome.value,
        "code": answer.code,
        "http_status": answer.http_status,
        "message": answer.message,
        **({"fix": answer.fix} if answer.fix else {}),
    }
    print(json.dumps(shown, ensure_ascii=False))


async def _send_app(
    config: Config, target: Any, delivery: AppDelivery, notification: Any, renderer: Any
) -> int:
    """One card through the target's app, recorded like serve records it (clicks work)."""
    from amfeishu.backend.base import Entry
    from amfeishu.backend.open import open_cards
    from amfeishu.cards import plan
    from amfeishu.cards.actions import app_context, group_id
    from amfeishu.cards.text import zone
    from amfeishu.feishu.openapi import FeishuApp
    from amfeishu.sinks import AppSink

    now = time.time()
    # a fresh entry id per run: each `send` is a new delivery, not a resend (the uuid)
    body = json.dumps(notification.to_dict()).encode()
    entry = Entry(int(now * 1000), target.name, body, "", "", now)
    group = group_id(notification.group_key)
    firing = any(a.firing for a in notification.alerts)
    tz = zone(target.timezone)
    app = app_context(None, delivery, target.name, group, target.language, tz, firing, now)
    card, _ = plan.group_card([plan.Queued(entry, notification)], target, renderer, app)
    if card is None:
        return _fail("nothing to send: the payload has no alert the target wants")
    settings = config.apps[delivery.app]
    client = FeishuApp(
        settings.app_id, settings.app_secret.get(), settings.base_url,
        timeout=config.delivery.timeout,
    )  # fmt: skip
    cards = open_cards(config)
    await cards.open()
    try:
        answer = await AppSink(client, delivery, target.name, cards, Unlimited()).send(card)
    finally:
        await cards.close()
        await client.aclose()
    _print_answer(answer)
    return 0 if answer.ok else 1


def _send_to_server(args: argparse.Namespace, body: Any, *, event: bool) -> int:
    """Through a running server: dedup, rate limits and the outbox apply."""
    base = args.url.rstrip("/")
    token = args.token or os.environ.get("AMFEISHU_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = f"/api/v1/notify/{args.target}" if event else f"/alerts/{args.target}"
    try:
        response = httpx.post(base + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {base}: {type(exc).__name__}")
    print(response.text.strip())
    return 0 if response.status_code == 200 else 1


def outbox(args: argparse.Namespace) -> int:
    from amfeishu.backend.base import StorageError
    from amfeishu.backend.open import open_backend

    try:
        config = _config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if config.storage.path == ":memory:" and config.storage.redis_url is None:
        return _fail("storage.path is :memory:, there is no outbox to read")
    if args.action == "replay" and args.id is None and not args.all:
        return _fail("replay needs an ID or --all", 2)

    async def run() -> int:
        box = open_backend(config).outbox  # SQLite, or Redis with storage.redis_url
        await box.open()
        try:
            if args.action == "list":
                dead = await box.dead()
                if args.id is not None:
                    dead = [e for e in dead if e.id == args.id]
                for e in dead:
                    when = datetime.fromtimestamp(e.received_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                    alerts = len(e.payload.get("alerts", []))
                    print(
                        f"{e.id}\t{e.target}\t{when}\t{alerts} alert(s)\t"
                        f"attempts={e.attempts}\t{e.last_error or ''}"
                    )
                print(f"{len(dead)} dead letter(s)", file=sys.stderr)
                return 0
            count = await box.revive(None if args.all else [args.id])
            print(
                f"requeued {count} dead letter(s); a running amfeishu serve sends them "
                "within seconds",
                file=sys.stderr,
            )
            return 0 if count else 1
        finally:
            await box.close()

    try:
        return asyncio.run(run())
    except StorageError as exc:
        return _fail(str(exc))
