"""Command line (README.md, "Configure", "Scripts and pipelines" and "Command line and
logs"): serve, check-config, render, send, outbox."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from amfeishu import __version__
from amfeishu.logs import FORMATS, LEVELS
from amfeishu.models import SEVERITY_ORDER


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amfeishu", description="Alertmanager → Feishu cards.")
    p.add_argument("--version", action="version", version=f"amfeishu {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="receive Alertmanager webhooks and deliver cards")
    # Each flag also under Alertmanager's own name, so an operator's habits work.
    serve.add_argument(
        "--config",
        "--config.file",
        action="append",
        metavar="PATH",
        help="config file (repeat to overlay)",
    )
    serve.add_argument(
        "--listen",
        "--web.listen-address",
        metavar="HOST:PORT",
        help="address to listen on (default 0.0.0.0:8064 or $AMFEISHU_LISTEN)",
    )
    serve.add_argument(
        "--log-level",
        "--log.level",
        default="info",
        choices=LEVELS,
        metavar="LEVEL",
        help=f"{', '.join(LEVELS)} (default info)",
    )
    serve.add_argument(
        "--log-format",
        "--log.format",
        default="text",
        choices=list(FORMATS),
        metavar="FORMAT",
        help="text for a terminal (default), logfmt or json for log shippers",
    )
    serve.add_argument(
        "--web.enable-ui",
        dest="enable_ui",
        action="store_true",
        help="serve the template playground at /ui",
    )
    serve.add_argument("--tls-cert-file", help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--tls-key-file", help="private key for --tls-cert-file (PEM)")
    serve.add_argument("--tls-client-ca-file", help="require client certificates signed by this CA")

    check = sub.add_parser("check-config", help="validate a config and every template")
    check.add_argument("path", nargs="+", help="config file (several: later ones overlay)")
    check.add_argument(
        "--print",
        dest="print_config",
        action="store_true",
        help="print the merged config with secrets masked",
    )

    render = sub.add_parser("render", help="print the card for a payload; sends nothing")
    render.add_argument("--config", action="append", required=True)
    render.add_argument("--target", required=True)
    render.add_argument("payload", help="Alertmanager webhook payload (JSON file, - for stdin)")
    render.add_argument("--html", action="store_true", help="an HTML preview instead of JSON")
    render.add_argument(
        "--storm",
        action="store_true",
        help="the storm digests of the payload's alerts (a JSON list) instead of its card",
    )

    send = sub.add_parser("send", help="deliver one message now and print Feishu's answer")
    send.add_argument("--config", action="append")
    send.add_argument("--target", required=True)
    send.add_argument("payload", nargs="?", help="Alertmanager payload JSON file")
    send.add_argument("--title")
    send.add_argument("--text")
    send.add_argument("--severity", default=None, choices=SEVERITY_ORDER)
    send.add_argument("--label", action="append", default=[], metavar="K=V")
    send.add_argument("--link", dest="link", help="URL for the message's button")
    send.add_argument("--url", help="post to a running amfeishu (http://host:8064) instead")
    send.add_argument("--token", help="bearer token for --url (or $AMFEISHU_TOKEN)")

    outbox = sub.add_parser("outbox", help="dead letters: list them, send them again")
    outbox.add_argument("action", choices=["list", "replay"])
    outbox.add_argument("id", nargs="?", type=int)
    outbox.add_argument("--all", action="store_true", help="replay every dead letter")
    outbox.add_argument("--config", action="append")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from amfeishu import cli

    handlers = {
        "serve": cli.serve,
        "check-config": cli.check_config,
        "render": cli.render,
        "send": cli.send,
        "outbox": cli.outbox,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
