"""The composition root: builds a hub (store, engine factories, clock) from the settings.

Each instance names its engine (``instances.engine``: sandbox, whatsmeow or cloud, fixed at
creation; ``WAHUB_ENGINE`` is the default). :class:`EngineRouter` is the one factory the hub sees:
it looks up the instance's engine and delegates to that engine's factory, built on first use.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from wahub.config import Settings
from wahub.domain.clock import Clock
from wahub.engines import base as eng
from wahub.engines.base import EngineFactory
from wahub.engines.cloud.engine import CloudEngineFactory, CloudOptions
from wahub.engines.sandbox import SandboxFactory, SandboxWorld
from wahub.runtime.clock import SystemClock
from wahub.runtime.hub import Hub
from wahub.store.base import Store
from wahub.store.sql import SqlStore


def default_store(settings: Settings) -> Store:
    """The store ``DATABASE_URL`` names: PostgreSQL, or the SQLite file under the data directory.

    Instances that predate ``instances.engine`` get ``WAHUB_ENGINE`` when the schema is upgraded. With
    leases (several nodes) a transaction left idle for one lease TTL is ended by PostgreSQL.
    """
    idle_ms = int(settings.node_lease_ttl_seconds * 1000) if settings.leases_on else None  # one lease TTL
    return SqlStore(settings.resolved_database_url, default_engine=settings.engine, idle_in_transaction_ms=idle_ms)


def cloud_options(settings: Settings, transport: Any = None) -> CloudOptions:
    """How cloud engines reach Graph (``WAHUB_CLOUD_GRAPH_URL``, ``WAHUB_CLOUD_GRAPH_TIMEOUT_MS``)."""
    timeout_s = settings.cloud_graph_timeout_ms / 1000
    return CloudOptions(base_url=settings.cloud_graph_url, timeout_s=timeout_s,
                        connect_timeout_s=min(5.0, timeout_s), transport=transport)


class EngineRouter(EngineFactory):
    """Several engines in one hub: each instance's engine comes from the factory its record names.

    ``engine_of(instance_id)`` answers the instance's engine name (the composition root binds it to
    the hub's registry; an unknown id gets ``default``). Factories are built on first use, so a hub
    with no whatsmeow instance never loads neonize.
    """

    name = "router"

    def __init__(self, default: str, builders: dict[str, Callable[[], EngineFactory]]) -> None:
        self.default = default
        self.builders = builders
        self.built: dict[str, EngineFactory] = {}
        self.engine_of: Callable[[str], str | None] = lambda _iid: None

    def factory(self, engine: str) -> EngineFactory:
        """The factory of ``engine`` (built now if needed). Raises KeyError for an engine this hub lacks."""
        if engine not in self.built:
            self.built[engine] = self.builders[engine]()
        return self.built[engine]

    def offers(self, engine: str) -> bool:
        """Whether instances of ``engine`` can run here."""
        return engine in self.builders

    def _for(self, instance_id: str) -> EngineFactory:
        return self.factory(self.engine_of(instance_id) or self.default)

    def create(self, instance_id: str, sink: eng.EventSink) -> eng.Engine:
        """An engine of the instance's own kind."""
        return self._for(instance_id).create(instance_id, sink)

    async def remove_session(self, instance_id: str) -> None:
        """Delegated to the instance's engine factory."""
        await self._for(instance_id).remove_session(instance_id)

    async def close(self) -> None:
        """Close every factory that was built."""
        for factory in list(self.built.values()):
            await factory.close()


def build_hub(settings: Settings, *, clock: Clock | None = None, rng: random.Random | None = None,
              store: Store | None = None, sandbox: SandboxWorld | None = None, http_client: Any = None,
              wrap_factory: Callable[[EngineFactory], EngineFactory] | None = None,
              cloud_transport: Any = None) -> Hub:
    """A hub wired from ``settings``; call ``await hub.start()`` to run it.

    ``store`` replaces the one ``DATABASE_URL`` names (e.g. a
    :class:`~wahub.store.memory.MemoryStore` in tests); the hub closes it on stop. Tests may
    also pass their own ``sandbox`` world, webhook ``http_client``, a ``wrap_factory`` spy (around
    the ``WAHUB_ENGINE`` factory) and an httpx ``cloud_transport`` for the Graph API.
    """
    clock = clock or SystemClock()
    rng = rng or random.Random()
    if store is None or sandbox is None:  # something will live under the data directory
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = default_store(settings)
    if sandbox is None and settings.engine == "sandbox":
        sandbox = SandboxWorld(clock, settings.data_dir, auto_link_ms=settings.sandbox_auto_link_ms,
                               send_latency_ms=settings.sandbox_send_latency_ms, auto_ack=settings.sandbox_auto_ack,
                               qr_refresh_ms=settings.sandbox_qr_refresh_ms, qr_window_ms=settings.qr_window_ms,
                               delivery_log=settings.sandbox_delivery_log, rng=rng)
    world = sandbox

    def whatsmeow() -> EngineFactory:
        from wahub.engines.whatsmeow.factory import WhatsmeowFactory

        return WhatsmeowFactory(settings.sessions_dir or settings.data_dir / "sessions", clock=clock)

    builders: dict[str, Callable[[], EngineFactory]] = {"whatsmeow": whatsmeow}
    if world is not None:  # the simulator only where the hub runs one (never beside real numbers by accident)
        sandbox_world: SandboxWorld = world
        builders["sandbox"] = lambda: SandboxFactory(sandbox_world)
    default = "sandbox" if world is not None else settings.engine
    if wrap_factory is not None:
        inner = builders[default]
        builders[default] = lambda: wrap_factory(inner())
    router = EngineRouter(default, builders)
    router.factory(default)  # built now: a wrong default fails at start-up, not at the first instance
    hub = Hub(settings, store, router, clock=clock, rng=rng, sandbox=sandbox, http_client=http_client)
    options = cloud_options(settings, cloud_transport)
    builders["cloud"] = lambda: CloudEngineFactory(hub.cloud.credentials, clock=clock, options=options,
                                                   last_inbound=hub.cloud.last_inbound)

    def engine_of(instance_id: str) -> str | None:
        rt = hub.instances.get(instance_id)
        return rt.record.engine if rt is not None else None

    router.engine_of = engine_of
    return hub
