"""A Generation: one config with the renderer and TLS context built from it.

Everything that can fail is done while building one: reading the config,
the templates, a trial render of every template a target may use, and the
certificate. A service swaps a finished generation in by one assignment, so
a request or a batch sees one generation whole, never half of two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from amfeishu import tls
from amfeishu.cards.renderer import Renderer
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import Config, Secret

Loader = Callable[[], Config]


@dataclass(frozen=True)
class Generation:
    config: Config
    renderer: Renderer
    tls: ssl.SSLContext | None = None  # None: plain HTTP, or HTTPS kept from an earlier one


def renderer_for(config: Config) -> Renderer:
    templates = config.templates
    return Renderer(templates.dir, language=templates.language, timezone=templates.timezone)


def build(loader: Loader, tls_flags: tls.Flags | None = None) -> Generation:
    """A checked generation, or ConfigError with every problem (templates and TLS included).

    `tls_flags` is given when the server speaks HTTPS: the certificate is
    loaded from the flags and the new config's `tls:`.
    """
    try:
        config = loader()
    except ConfigError as exc:
        if exc.partial is not None:  # report template problems in the same breath
            exc.problems.extend(renderer_for(exc.partial).check(exc.partial.targets.values()))
        raise
    renderer = renderer_for(config)
    problems = renderer.check(config.targets.values())
    context = None
    if tls_flags is not None and (files := tls.effective(tls_flags, config)) is not None:
        try:
            context = tls.server_context(files)
        except tls.TLSError as exc:
            problems.append(f"tls: {exc}")
    if problems:
        raise ConfigError(problems, config.source)
    return Generation(config, renderer, context)


def config_hash(config: Config) -> float:
    """A number for the amfeishu_config_hash gauge; secrets enter only hashed."""
    text = repr(config) + "\0".join(_secrets(config))
    return float(int(hashlib.sha256(text.encode()).hexdigest()[:12], 16))


def _secrets(node: object) -> list[str]:
    """Every Secret's value in the config (repr shows them all as <secret>)."""
    if isinstance(node, Secret):
        return [node.get()]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [s for f in dataclasses.fields(node) for s in _secrets(getattr(node, f.name))]
    if isinstance(node, dict):
        return [s for key in sorted(node) for s in _secrets(node[key])]
    if isinstance(node, tuple | list):
        return [s for item in node for s in _secrets(item)]
    return []
