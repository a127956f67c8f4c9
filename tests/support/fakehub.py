"""An in-process hub on a fake clock: MemoryStore, sandbox engine, webhooks captured in memory.

Nothing here does I/O or leaves the event loop's thread, so ``await clock.advance(ms)`` runs every
timer, send and delivery that falls due, in time order, deterministically.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import API_KEY
from wahub import config
from wahub.domain.clock import Clock
from wahub.domain.lifecycle import State
from wahub.engines.base import Engine, EngineFactory, EventSink, SendResult
from wahub.engines.sandbox import SandboxFactory, SandboxWorld
from wahub.runtime import compose
from wahub.runtime.clock import FakeClock
from wahub.runtime.hub import Hub
from wahub.store.base import Store
from wahub.store.memory import MemoryStore

HOOK_URL = "http://hook.invalid/wa-hub"


@dataclass
class Captured:
    """Webhook bodies the hub POSTed (through an in-memory transport), in arrival order."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    def names(self, event: str | None = None) -> list[str]:
        """Event names, optionally only ``event``."""
        return [b["event"] for b in self.bodies if event is None or b["event"] == event]

    def of(self, event: str) -> list[dict[str, Any]]:
        """Bodies of one event name."""
        return [b for b in self.bodies if b["event"] == event]


class SpyFactory(EngineFactory):
    """Wraps the sandbox factory and records every send call with the instance's state at that moment."""

    name = "sandbox"

    def __init__(self, inner: SandboxFactory) -> None:
        self.inner = inner
        self.hub: Hub | None = None
        self.calls: list[tuple[str, str, int]] = []  # (instance, state at call, time)
        self.created = 0
        self.on_send: Any = None  # optional async hook(instance_id, chat_id, text_or_caption) run before a send
        self.choose_ids = False  # engines choose message ids (new_message_id), like whatsmeow

    def create(self, instance_id: str, sink: EventSink) -> Engine:
        self.created += 1
        engine = self.inner.create(instance_id, sink)
        spy = self
        original_text, original_poll = engine.send_text, engine.send_poll

        async def send_text(chat_id: str, text: str, *, message_id: str | None = None) -> SendResult:
            spy._record(instance_id)
            if spy.on_send is not None:
                await spy.on_send(instance_id, chat_id, text)
            return await original_text(chat_id, text, message_id=message_id)

        async def send_poll(chat_id: str, caption: str, options: list[str], multiple: bool, *,
                            message_id: str | None = None, template: Any = None) -> SendResult:
            spy._record(instance_id)
            return await original_poll(chat_id, caption, options, multiple, message_id=message_id, template=template)

        def new_message_id() -> str | None:
            return self.inner.world.new_message_id() if spy.choose_ids else None

        engine.send_text = send_text  # type: ignore[method-assign]
        engine.send_poll = send_poll  # type: ignore[method-assign]
        engine.new_message_id = new_message_id  # type: ignore[method-assign]
        return engine

    def _record(self, instance_id: str) -> None:
        assert self.hub is not None
        rt = self.hub.instances[instance_id]
        self.calls.append((instance_id, rt.state.value, self.inner.world.clock.now_ms()))


@dataclass
class FakeHub:
    """The hub under test and its knobs."""

    hub: Hub
    clock: FakeClock
    world: SandboxWorld
    store: Any
    hooks: Captured
    spy: SpyFactory

    async def advance(self, ms: int) -> None:
        """Move the fake time forward, running everything due."""
        await self.clock.advance(ms)

    def state(self, iid: str) -> State:
        """Current state of an instance."""
        return self.hub.instances[iid].state

    async def link(self, iid: str) -> None:
        """Scan the instance's QR and let it become ready."""
        await self.advance(10)
        await self.world.scan(iid)
        await self.advance(10)


def build(tmp_path: Path | None, *, store: Store | None = None, start_ms: int = 1_767_225_600_000,
          world_kwargs: dict[str, Any] | None = None, clock: FakeClock | None = None,
          hub_clock: Callable[[FakeClock], Clock] | None = None, **overrides: Any) -> FakeHub:
    """A hub on a fake clock; ``overrides`` are Settings fields.

    ``clock`` is the true (fake) time the sandbox stamps deliveries with; ``hub_clock`` builds the
    hub's own clock from it (e.g. a :class:`SystemClock` whose wall time is stepped).
    """
    clock = clock or FakeClock(start_ms)
    base: dict[str, Any] = {"api_key": API_KEY, "engine": "sandbox", "restore_stagger_ms": 0,
                            "sandbox_send_latency_ms": 0, "data_dir": tmp_path or Path("/nonexistent"),
                            "webhook_retry_base_ms": 1000}
    base.update(overrides)
    settings = config.Settings(**base)
    world = SandboxWorld(clock, tmp_path, send_latency_ms=0, auto_ack=False, qr_refresh_ms=20_000,
                         qr_window_ms=settings.qr_window_ms, rng=random.Random(3), **(world_kwargs or {}))
    hooks = Captured()

    def handler(request: httpx.Request) -> httpx.Response:
        hooks.bodies.append(json.loads(request.content))
        return httpx.Response(200, json={})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    spies: list[SpyFactory] = []

    def wrap(factory: EngineFactory) -> EngineFactory:
        assert isinstance(factory, SandboxFactory)
        spies.append(SpyFactory(factory))
        return spies[0]

    store = store or MemoryStore()
    hub = compose.build_hub(settings, clock=hub_clock(clock) if hub_clock else clock, rng=random.Random(5),
                            store=store, sandbox=world, http_client=client, wrap_factory=wrap)
    spy = spies[0]
    spy.hub = hub
    return FakeHub(hub, clock, world, store, hooks, spy)
