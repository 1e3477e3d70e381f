"""HTTPS serving: files from `tls:` or the serve flags, re-read on every reload.

A rotated certificate (cert-manager renews in place) needs no restart: the
running SSL context loads the new chain, and new handshakes present it.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amfeishu.settings import TLS, Config

log = logging.getLogger("amfeishu.tls")


@dataclass(frozen=True)
class Flags:
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None


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


def reloader(context: ssl.SSLContext, flags: Flags) -> Callable[[Config], None]:
    """A reload hook that loads the (possibly rotated) files into the live context."""

    def reload_certificates(config: Config) -> None:
        tls = effective(flags, config)
        if tls is None:
            log.warning("tls removed from the config: HTTPS stays on until a restart")
            return
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.client_ca_file:
                context.load_verify_locations(tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load TLS certificate {tls.cert_file}: {exc}") from None
        log.info("TLS certificate re-read from %s", tls.cert_file)

    return reload_certificates
