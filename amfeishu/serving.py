"""`amfeishu serve`: check, bind, start the Service, then serve until SIGTERM.

Every start-up failure (config, storage, Redis, port, TLS) ends as one line on
stderr naming the cause and the fix, and a non-zero exit; `--log-level debug`
adds the traceback (README.md, "Command line and logs"). So that a failing
start is an exception caught here rather than a traceback printed by uvicorn,
the app's lifespan is entered here, around uvicorn's serving loop, and the
socket is bound before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from amfeishu import generation, tls
from amfeishu.app import build_app
from amfeishu.backend.base import StorageError
from amfeishu.config import machine
from amfeishu.config.load import embedded_default, load_config, parse_listen
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import TLS, Config
from amfeishu.logs import setup_logging
from amfeishu.service import Service
from amfeishu.ui import ui_routes

log = logging.getLogger("amfeishu")


_PEM_FIX = "each file must be PEM: the certificate chain, its private key, the client CA"


def _fail(message: str, code: int = 1) -> int:
    print(f"amfeishu: {message}", file=sys.stderr)
    return code


def serve(args: argparse.Namespace) -> int:
    """Start, or fail with one line naming the cause and the fix (debug adds the traceback)."""
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
    problems = machine.check(config, _tls_files(flags, served_tls))
    if problems:
        return _problems(ConfigError(problems, config.source))
    if served_tls is not None:
        try:
            context = tls.server_context(served_tls)
        except tls.TLSError as exc:
            return _failed(f"cannot serve HTTPS: {exc} ({_PEM_FIX})", exc)
        first = generation.Generation(config, first.renderer, context)
    listen = args.listen or (os.environ.get("AMFEISHU_LISTEN") if not paths else None)
    host_port = parse_listen(listen or config.listen)
    if host_port is None:
        return _fail(f"--web.listen-address must be HOST:PORT, got {listen!r}", 2)
    try:
        machine.make_storage_dir(config)
        service = Service(
            first,
            loader=loader if paths else None,
            tls_flags=flags if served_tls else None,
            shutdown_grace=config.delivery.timeout,
        )
    except OSError as exc:
        fix = "make it writable, or set storage.path elsewhere"
        return _failed(f"storage.path: cannot create its directory: {exc} ({fix})", exc)
    except ConfigError as exc:
        return _problems(exc)
    except StorageError as exc:
        return _failed(f"cannot open storage: {exc} ({_storage_fix(config)})", exc)
    extra_routes: list[BaseRoute] = []
    if args.enable_ui:
        extra_routes = ui_routes(service)
    app = build_app(service, extra_routes=extra_routes)
    server_config = uvicorn.Config(
        app,
        host=host_port[0],
        port=host_port[1],
        log_config=None,
        access_log=False,
        lifespan="off",  # entered by _run, so a failing start is an error we catch
        timeout_graceful_shutdown=int(config.delivery.timeout) + 1,
        **tls.uvicorn_options(served_tls),
    )
    try:
        server_config.load()  # builds the SSL context now, so a bad certificate fails early
    except (OSError, ssl.SSLError) as exc:
        where = served_tls.cert_file if served_tls else "?"
        return _failed(f"cannot serve HTTPS with {where}: {exc} ({_PEM_FIX})", exc)
    if server_config.ssl is not None:  # each handshake uses the current generation's context
        tls.follow(server_config.ssl, lambda: service.generation.tls)
    try:
        sock = _bind(*host_port)
    except OSError as exc:
        return _failed(_listen_problem(host_port, exc), exc)
    _install_sighup(service.reload)
    # uvicorn re-raises SIGTERM after its graceful shutdown; a clean stop exits 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    scheme = "https" if served_tls else "http"
    started = [f"amfeishu listening on {scheme}://{host_port[0]}:{host_port[1]}"]
    if not paths:
        target = config.targets["default"]
        how = "preview (no FEISHU_WEBHOOK: cards are logged)" if target.preview else "Feishu"
        started.insert(0, f"embedded default config: target 'default' → {how}")
    server = uvicorn.Server(server_config)
    with asyncio.Runner(loop_factory=server_config.get_loop_factory()) as runner:
        return runner.run(_run(app, server, sock, config, started))


async def _run(
    app: Starlette, server: uvicorn.Server, sock: socket.socket, config: Config, started: list[str]
) -> int:
    """The app's lifespan (Service start and stop) around uvicorn's serving loop."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(app.router.lifespan_context(app))
        except StorageError as exc:
            return _failed(f"cannot open storage: {exc} ({_storage_fix(config)})", exc)
        except ConfigError as exc:
            return _problems(exc)
        except Exception as exc:  # our bug: still one line; the traceback with debug
            return _failed(
                f"cannot start: {type(exc).__name__}: {exc} (--log-level debug shows where)", exc
            )
        for line in started:
            log.info("%s", line)
        await server.serve(sockets=[sock])
    return 0


def _failed(message: str, exc: BaseException) -> int:
    """The one line; with --log-level debug the traceback follows it."""
    code = _fail(message)
    log.debug("the failure in full:", exc_info=exc)
    return code


def _storage_fix(config: Config) -> str:
    if config.storage.redis_url is not None:
        return "check that Redis is up and that storage.redis_url points to it"
    return f"check storage.path, {config.storage.path}: is it an amfeishu outbox?"


def _tls_files(flags: tls.Flags, served: TLS | None) -> list[tuple[str, str]]:
    """The certificate files served, each named by the flag or config key it came from."""
    if served is None:
        return []
    files = [
        ("cert_file", served.cert_file, flags.cert_file),
        ("key_file", served.key_file, flags.key_file),
        ("client_ca_file", served.client_ca_file, flags.client_ca_file),
    ]
    named: dict[str, str] = {}  # path → name; the key is often the certificate's own file
    for key, path, given in files:
        if path and path not in named:
            named[path] = f"--tls-{key.replace('_', '-')}" if given == path else f"tls.{key}"
    return [(name, path) for path, name in named.items()]


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts (as uvicorn would bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only then (else Nagle: 40 ms stalls)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


_LISTEN_FIXES = {
    errno.EADDRINUSE: "another process holds it: stop that one, or choose another port",
    errno.EACCES: "ports below 1024 need privileges: choose a higher port",
    errno.EADDRNOTAVAIL: "no interface of this host has that address: choose another",
}


def _listen_problem(host_port: tuple[str, int], exc: OSError) -> str:
    fix = _LISTEN_FIXES.get(exc.errno or 0, "check the address")
    host, port = host_port
    return (
        f"cannot listen on {host}:{port}: {exc.strerror or exc} ({fix} with --web.listen-address)"
    )


def _problems(exc: ConfigError) -> int:
    for problem in exc.problems:
        where = "amfeishu" if problem.startswith("--") else exc.source  # a flag's file
        print(f"{where}: {problem}", file=sys.stderr)
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
