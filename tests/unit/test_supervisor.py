"""The supervisor on its own: narrow dependencies (lifecycle port, clock, policy, events, engines, callbacks).

No hub: a memory store, a fake clock, the sandbox engine and two recording callbacks.
"""

from __future__ import annotations

import random

from wahub.domain.lifecycle import State
from wahub.engines import base as eng
from wahub.engines.sandbox import SandboxFactory, SandboxWorld
from wahub.observability import Metrics
from wahub.runtime.clock import FakeClock
from wahub.runtime.events import Events
from wahub.runtime.registry import InstanceRuntime
from wahub.runtime.supervisor import LifecyclePolicy, Supervisor
from wahub.store.memory import MemoryStore

POLICY = LifecyclePolicy(restart_backoff_ms=2000, max_restarts_per_window=3, restart_window_minutes=10,
                         soft_restart_timeout_ms=60_000, hard_restart_timeout_ms=60_000, ready_probe_timeout_ms=30_000,
                         qr_window_ms=160_000, restricted_auto_resume=False)


class _Loop:
    async def stop(self) -> None:
        return None


async def _supervisor() -> tuple[Supervisor, InstanceRuntime, FakeClock, SandboxWorld, list[tuple[State, State]],
                                 list[eng.EngineEvent]]:
    clock = FakeClock()
    store = MemoryStore()
    rec = await store.create_instance(id="i", name="i", webhook_url=None, webhook_events=[], webhook_secret=None,
                                      now=clock.now_ms())
    rt = InstanceRuntime(record=rec, state=State.INITIALIZING, state_since=clock.now_ms())
    rt.sendloop = _Loop()  # type: ignore[assignment]
    world = SandboxWorld(clock, None, auto_ack=False, rng=random.Random(1))
    moves: list[tuple[State, State]] = []
    data: list[eng.EngineEvent] = []

    async def data_events(_rt: InstanceRuntime, ev: eng.EngineEvent) -> bool:
        if isinstance(ev, eng.InboundMessage | eng.PollVote | eng.Receipt):
            data.append(ev)
            return True
        return False

    sup = Supervisor(rt, store, clock, POLICY, Events(store, clock, lambda _i: None), SandboxFactory(world),
                     Metrics(), on_transition=lambda _rt, src, dst: moves.append((src, dst)), data_events=data_events)
    rt.supervisor = sup
    return sup, rt, clock, world, moves, data


async def test_a_drop_climbs_the_ladder_soft_then_hard_and_the_budget_ends_in_error() -> None:
    sup, rt, clock, world, moves, _ = await _supervisor()
    world.phone("i").linked = True
    await sup.boot("test")
    await clock.advance(10)
    assert rt.state == State.READY
    await world.fault("i", "never_ready", {"enabled": True})
    await world.fault("i", "disconnect", {})
    assert rt.state == State.DISCONNECTED
    await clock.advance(1999)
    assert len(await sup.store.restarts_since("i", 0)) == 0
    await clock.advance(1)
    assert len(await sup.store.restarts_since("i", 0)) == 1  # soft restart after 2 s
    await clock.advance(10 * 60_000)
    assert rt.state == State.ERROR  # attempts kept failing: budget of 3 spent
    assert len(await sup.store.restarts_since("i", 0)) == 3
    assert (State.READY, State.DISCONNECTED) in moves


async def test_data_events_go_to_inbound_not_through_the_lifecycle() -> None:
    sup, rt, clock, world, moves, data = await _supervisor()
    world.phone("i").linked = True
    await sup.boot("test")
    await clock.advance(10)
    before = list(moves)
    await world.inject_message("i", "201000000001@s.whatsapp.net", "hi")
    await world.inject_ack("i", ["x"], "read")
    assert [type(e).__name__ for e in data] == ["InboundMessage", "Receipt"]
    assert moves == before and rt.state == State.READY
