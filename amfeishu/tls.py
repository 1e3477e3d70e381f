"""HTTPS serving: files from `tls:` or the serve flags, read again on every reload.

A rotated certificate (cert-manager renews in place) needs no restart: a
reload builds a new SSL context from the files (which may fail, and then the
reload fails as a whole), and the live context hands each new handshake to
the current one from its SNI callback, which OpenSSL calls for every
ClientHello, with or without a server name.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amfeishu.config.types import TLS, Config


@dataclass(frozen=True)
class Flags:
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None


class TLSError(Exception):
    """A certificate, key or CA file that cannot be loaded; the text names the file."""


def effective(flags: Flags, config: Config) -> TLS | None:
    """Flags win over the config file, field by field."""
    cfg = config.tls
    cert = flags.cert_file or (cfg.cert_file if cfg else None)
    if not cert:
        return None
    key = flags.key_file or (cfg.key_file if cfg else None) or cert
    ca = flags.client_ca_file or (cfg.client_ca_file if cfg else None)
    return TLS(cert, key, ca)


def uvicorn_options(tls: TLS | None) -> dict[str, Any]:
    if tls is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:  # mutual TLS: Alertmanager's tls_config presents a client certificate
        options.update(ssl_ca_certs=tls.client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def server_context(tls: TLS) -> ssl.SSLContext:
    """A server context for the files as they are now, or TLSError naming the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.load_verify_locations(tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load TLS certificate {tls.cert_file}: {exc}") from None
    return context


def follow(live: ssl.SSLContext, current: Callable[[], ssl.SSLContext | None]) -> None:
    """Make the server's context hand every new handshake to `current()`."""

    def switch(connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        wanted = current()
        if wanted is not None and wanted is not context:
            connection.context = wanted

    live.sni_callback = switch
