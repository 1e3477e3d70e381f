"""The Service: the long-lived parts of a running amfeishu and its current Generation.

Long-lived: storage (backend), metrics, the Feishu client, the dispatcher.
Per generation: config, renderer, TLS context. `reload` builds a whole new
generation first (anything that can fail fails there, and the old one stays
live), then swaps it in by one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

from amfeishu import generation as generations
from amfeishu import tls, watch
from amfeishu.backend.base import Backend
from amfeishu.backend.open import open_backend, open_cards
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import Config
from amfeishu.dispatcher import Dispatcher
from amfeishu.feishu.webhook import FeishuClient
from amfeishu.generation import Generation, Loader
from amfeishu.metrics import Metrics

log = logging.getLogger("amfeishu.reload")


class Service:
    def __init__(
        self,
        generation: Generation,
        *,
        loader: Loader | None = None,
        tls_flags: tls.Flags | None = None,
        client: FeishuClient | None = None,
        backend: Backend | None = None,
        shutdown_grace: float | None = None,
    ) -> None:
        self.generation = generation
        self.loader = loader  # None: nothing to reload from (embedded default, tests)
        self.tls_flags = tls_flags  # set when serving HTTPS
        self.backend = backend or open_backend(generation.config)
        self.cards = open_cards(generation.config)  # app targets' cards
        self.metrics = Metrics()
        self.metrics.config_hash.set(generations.config_hash(generation.config))
        self.dispatcher: Dispatcher | None = None
        self.ready = False
        self._client = client
        self._own_client = client is None
        self._grace = shutdown_grace
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Config, *, client: FeishuClient | None = None) -> Service:
        """A service for a config loaded elsewhere, with nothing to reload from (tests, tools)."""
        return cls(Generation(config, generations.renderer_for(config)), client=client)

    @property
    def config(self) -> Config:
        return self.generation.config

    async def start(self) -> None:
        config = self.config
        client = self._client or FeishuClient(timeout=config.delivery.timeout)
        self._client = client
        await self.backend.outbox.open()
        await self.cards.open()
        self.dispatcher = Dispatcher(
            lambda: self.generation, self.backend, client, self.metrics, cards=self.cards
        )
        await self.dispatcher.start()
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        self.ready = True
        # Start-up objects live as long as the process: keep them out of the
        # collector's full passes, which otherwise stall requests for tens of ms.
        gc.freeze()
        interval = watch.configured_interval()
        if self.loader is not None and interval:  # serve --config: reload on file changes
            task = watch.watch(lambda: self.generation.config, self.reload, interval)
            self._watcher = asyncio.create_task(task, name="config-watch")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self.ready = False
        if self.dispatcher is not None:
            grace = self.config.delivery.timeout if self._grace is None else self._grace
            await self.dispatcher.stop(grace)
        await self.backend.outbox.close()
        await self.cards.close()
        if self._own_client and self._client is not None:
            await self._client.aclose()

    def reload(self) -> list[str]:
        """Swap in a freshly built generation; [] on success, else the problems (old one kept)."""
        if self.loader is None:
            return ["nothing to reload: serve was started without --config"]
        try:
            new = generations.build(self.loader, self.tls_flags)
        except ConfigError as exc:
            self.metrics.reload_ok.set(0)
            log.error("reload failed, keeping the old config: %s", exc)
            return exc.problems
        except Exception as exc:  # our bug, not the user's: still keep the old one
            self.metrics.reload_ok.set(0)
            log.exception("reload failed, keeping the old config")
            return [f"reload failed: {type(exc).__name__}: {exc}"]
        old = self.generation
        if new.config.storage != old.config.storage:
            log.warning("storage settings changed; they take effect after a restart")
        if old.tls is not None and new.tls is None:
            log.warning("tls removed from the config: HTTPS stays on until a restart")
            new = Generation(new.config, new.renderer, old.tls)
        self.generation = new  # the swap: what follows cannot fail
        if self.dispatcher is not None:
            self.dispatcher.reconcile()
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        self.metrics.config_hash.set(generations.config_hash(new.config))
        if new.tls is not None and new.tls is not old.tls:
            log.info("TLS certificate read again")
        log.info("configuration reloaded from %s", new.config.source)
        return []
