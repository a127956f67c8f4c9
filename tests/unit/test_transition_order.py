"""State changes are applied in the order they happen, however long each takes to store.

A slow write of an earlier change (the QR's ``connecting``) must not land after a later one
(``ready``) and leave the instance saying ``connecting`` while its engine is ready.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.fakehub import build
from wahub.domain.lifecycle import State
from wahub.runtime.clock import FakeClock
from wahub.store.memory import MemoryStore


class SlowConnectingStore(MemoryStore):
    """Storing the move to ``connecting`` takes 300 ms (a loaded database); others are instant."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: FakeClock | None = None

    async def record_transition(self, instance_id: str, *, from_state: str, to_state: str, reason: str | None,
                                now: int, events: Any = (), **values: Any) -> None:
        if to_state == State.CONNECTING.value:
            assert self.clock is not None
            await self.clock.sleep(300)
        await super().record_transition(instance_id, from_state=from_state, to_state=to_state, reason=reason,
                                        now=now, events=events, **values)


async def test_a_slow_earlier_change_never_overwrites_a_later_one() -> None:
    store = SlowConnectingStore()
    fh = build(None, store=store)
    store.clock = fh.clock
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("shop", None, [])
    await fh.advance(10)  # the QR shows; storing "connecting" is under way
    scan = asyncio.create_task(fh.world.scan(rt.id))  # the phone scans at once: ready comes while it is out
    for _ in range(20):
        await fh.advance(100)
    await scan
    assert fh.state(rt.id) == State.READY
    stored = await store.get_instance(rt.id)
    assert stored is not None and stored.state == State.READY.value
    moves = [(t.from_state, t.to_state) for t in reversed(await store.transitions(rt.id))]
    assert all(a[1] == b[0] for a, b in zip(moves, moves[1:], strict=False)), moves  # one unbroken chain
    await fh.hub.stop()

