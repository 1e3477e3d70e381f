"""Reload: build the new config and templates completely, trial-render, then swap.

A failed reload keeps the old set and sets config_last_reload_successful 0.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from amfeishu.config import ConfigError
from amfeishu.settings import Config
from amfeishu.templating import Renderer

if TYPE_CHECKING:
    from amfeishu.app import State

log = logging.getLogger("amfeishu.reload")
Loader = Callable[[], Config]


def config_hash(config: Config) -> float:
    """A number for the amfeishu_config_hash gauge; secrets enter only hashed."""
    text = repr(config) + "".join(
        t.webhook.get() + (t.secret.get() if t.secret else "")
        for t in config.targets.values()
        if t.webhook
    )
    return float(int(hashlib.sha256(text.encode()).hexdigest()[:12], 16))


def build(loader: Loader) -> tuple[Config, Renderer]:
    """The new config and renderer, or ConfigError with every problem, templates included."""
    try:
        config = loader()
    except ConfigError as exc:
        if exc.partial is not None:  # report template problems in the same breath
            exc.problems.extend(_renderer(exc.partial).check(exc.partial.targets.values()))
        raise
    renderer = _renderer(config)
    problems = renderer.check(config.targets.values())
    if problems:
        raise ConfigError(problems, config.source)
    return config, renderer


def _renderer(config: Config) -> Renderer:
    templates = config.templates
    return Renderer(templates.dir, language=templates.language, timezone=templates.timezone)


def reload(state: State) -> list[str]:
    """Swap in a freshly loaded config; [] on success, else the problems (old set kept)."""
    if state.loader is None:
        return ["nothing to reload: serve was started without --config"]
    try:
        config, renderer = build(state.loader)
    except ConfigError as exc:
        state.metrics.reload_ok.set(0)
        log.error("reload failed, keeping the old config: %s", exc)
        return exc.problems
    except Exception as exc:  # our bug, not the user's: still keep the old set
        state.metrics.reload_ok.set(0)
        log.exception("reload failed, keeping the old config")
        return [f"reload failed: {type(exc).__name__}: {exc}"]
    if config.storage != state.config.storage:
        log.warning("storage settings changed; they take effect after a restart")
    state.config, state.renderer = config, renderer
    if state.dispatcher is not None:
        state.dispatcher.swap(config, renderer)
    problems = []
    for hook in state.reload_hooks:  # e.g. re-read TLS certificates
        try:
            hook(config)
        except Exception as exc:  # the new config is in place; report what did not apply
            problems.append(f"{getattr(hook, '__name__', 'hook')}: {exc}")
    if problems:
        state.metrics.reload_ok.set(0)
        log.error("reload applied, but: %s", "; ".join(problems))
        return problems
    state.metrics.reload_ok.set(1)
    state.metrics.reload_time.set(time.time())
    state.metrics.config_hash.set(config_hash(config))
    log.info("configuration reloaded from %s", config.source)
    return []
