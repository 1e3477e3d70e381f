"""What each command of `amfeishu` does; argument parsing is in __main__.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from amfeishu import tls
from amfeishu.config.load import embedded_default, load_config, load_raw, parse_listen
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import Config
from amfeishu.events import parse_event
from amfeishu.feishu.answers import Outcome
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.models import PayloadError, parse_notification
from amfeishu.ratelimit import Unlimited
from amfeishu.sinks import WebhookSink

log = logging.getLogger("amfeishu")


def _fail(message: str, code: int = 1) -> int:
    print(f"amfeishu: {message}", file=sys.stderr)
    return code


def _config(paths: list[str] | None) -> Config:
    return load_config(paths) if paths else embedded_default()


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from starlette.routing import BaseRoute

    from amfeishu import generation
    from amfeishu.app import build_app
    from amfeishu.logs import setup_logging
    from amfeishu.service import Service

    setup_logging(args.log_level, args.log_format)
    paths = args.config
    loader = (lambda: load_config(paths)) if paths else embedded_default
    flags = tls.Flags(args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)
    try:
        first = generation.build(loader)
    except ConfigError as exc:
        return _problems(exc)
    config = first.config
    served_tls = tls.effective(flags, config)
    if served_tls is not None:
        try:
            context = tls.server_context(served_tls)
        except tls.TLSError as exc:
            return _fail(f"cannot serve HTTPS: {exc}")
        first = generation.Generation(config, first.renderer, context)
    listen = args.listen or (os.environ.get("AMFEISHU_LISTEN") if not paths else None)
    host_port = parse_listen(listen or config.listen)
    if host_port is None:
        return _fail(f"--listen must be HOST:PORT, got {listen!r}", 2)
    service = Service(
        first,
        loader=loader if paths else None,
        tls_flags=flags if served_tls else None,
        shutdown_grace=config.delivery.timeout,
    )
    extra_routes: list[BaseRoute] = []
    if args.enable_ui:
        from amfeishu.ui import ui_routes

        extra_routes = ui_routes(service)
    app = build_app(service, extra_routes=extra_routes)
    if not paths:
        target = config.targets["default"]
        how = "preview (no FEISHU_WEBHOOK: cards are logged)" if target.preview else "Feishu"
        log.info("embedded default config: target 'default' → %s", how)
    server_config = uvicorn.Config(
        app,
        host=host_port[0],
        port=host_port[1],
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(config.delivery.timeout) + 1,
        **tls.uvicorn_options(served_tls),
    )
    try:
        server_config.load()  # builds the SSL context now, so a bad certificate fails early
    except (OSError, ssl.SSLError) as exc:
        return _fail(
            f"cannot serve HTTPS with {served_tls.cert_file if served_tls else '?'}: {exc}"
        )
    if server_config.ssl is not None:  # each handshake uses the current generation's context
        tls.follow(server_config.ssl, lambda: service.generation.tls)
    server = uvicorn.Server(server_config)
    _install_sighup(service.reload)
    # uvicorn re-raises SIGTERM after its graceful shutdown; a clean stop exits 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    scheme = "https" if served_tls else "http"
    log.info("amfeishu listening on %s://%s:%d", scheme, *host_port)
    server.run()
    return 0


def _problems(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)
    return 1


def _install_sighup(reload: Callable[[], list[str]]) -> None:
    """SIGHUP reloads like POST /-/reload (installed once the loop runs)."""

    def on_hup(*_: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(reload)

    signal.signal(signal.SIGHUP, on_hup)


def check_config(args: argparse.Namespace) -> int:
    from amfeishu import generation

    try:
        config = generation.build(lambda: load_config(args.path)).config
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
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
                answer = await sink.send(card.message)
                print(
                    json.dumps(
                        {
                            "outcome": answer.outcome.value,
                            "code": answer.code,
                            "http_status": answer.http_status,
                            "message": answer.message,
                            **({"fix": answer.fix} if answer.fix else {}),
                        },
                        ensure_ascii=False,
                    )
                )
                if answer.outcome is not Outcome.DELIVERED:
                    worst = 1
        finally:
            await client.aclose()
        return worst

    return asyncio.run(deliver())


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
