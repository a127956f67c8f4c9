"""The composition root: builds a hub (store, engine factory, clock) from the settings."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from wahub.config import Settings
from wahub.domain.clock import Clock
from wahub.engines.base import EngineFactory
from wahub.engines.sandbox import SandboxFactory, SandboxWorld
from wahub.runtime.clock import SystemClock
from wahub.runtime.hub import Hub
from wahub.store.base import Store
from wahub.store.sql import SqlStore


def default_store(settings: Settings) -> Store:
    """The store ``DATABASE_URL`` names: PostgreSQL, or the SQLite file under the data directory."""
    return SqlStore(settings.resolved_database_url)


def build_hub(settings: Settings, *, clock: Clock | None = None, rng: random.Random | None = None,
              store: Store | None = None, sandbox: SandboxWorld | None = None, http_client: Any = None,
              wrap_factory: Callable[[EngineFactory], EngineFactory] | None = None) -> Hub:
    """A hub wired from ``settings``; call ``await hub.start()`` to run it.

    ``store`` replaces the one ``DATABASE_URL`` names (e.g. a
    :class:`~wahub.store.memory.MemoryStore` in tests); the hub closes it on stop. Tests may
    also pass their own ``sandbox`` world, webhook ``http_client`` and a ``wrap_factory`` spy.
    """
    clock = clock or SystemClock()
    rng = rng or random.Random()
    if store is None or sandbox is None:  # something will live under the data directory
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = default_store(settings)
    factory: EngineFactory
    if sandbox is not None:
        factory = SandboxFactory(sandbox)
    elif settings.engine == "sandbox":
        sandbox = SandboxWorld(clock, settings.data_dir, auto_link_ms=settings.sandbox_auto_link_ms,
                               send_latency_ms=settings.sandbox_send_latency_ms, auto_ack=settings.sandbox_auto_ack,
                               qr_refresh_ms=settings.sandbox_qr_refresh_ms, qr_window_ms=settings.qr_window_ms,
                               delivery_log=settings.sandbox_delivery_log, rng=rng)
        factory = SandboxFactory(sandbox)
    else:
        from wahub.engines.whatsmeow.factory import WhatsmeowFactory

        factory = WhatsmeowFactory(settings.data_dir / "sessions", clock=clock)
    if wrap_factory is not None:
        factory = wrap_factory(factory)
    return Hub(settings, store, factory, clock=clock, rng=rng, sandbox=sandbox, http_client=http_client)
