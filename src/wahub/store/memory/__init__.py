"""An in-memory :class:`~wahub.store.base.Store`: the fake the runtime runs on in fast tests.

It keeps the SQL store's semantics, invariants included (one item per idempotency key and
instance, at most one ``sending`` item per instance, FIFO claims among due items, forward-only
acks, vote and inbound dedupe), and passes the same contract suite
(``tests/integration/store/``).

Why it is safe without locks: every method runs to completion without awaiting anything, so on
one event loop each call is atomic, exactly like one SQL transaction. It does no I/O and never
leaves the loop's thread, so a test driven by a fake clock settles with ``asyncio.sleep(0)``.
Values are copied in and out (JSON columns are kept serialised, as in SQL), so callers can
never mutate stored state through a returned record.
"""

from __future__ import annotations

from wahub.store.memory.cloud import CloudMemory
from wahub.store.memory.events import EventsMemory
from wahub.store.memory.fleet import FleetMemory
from wahub.store.memory.inbound import InboundMemory
from wahub.store.memory.instances import InstancesMemory
from wahub.store.memory.items import ItemsMemory
from wahub.store.memory.numbers import NumbersMemory
from wahub.store.memory.outbox import OutboxMemory
from wahub.store.memory.state import UNCERTAIN_ERROR, MemoryBase

__all__ = ["UNCERTAIN_ERROR", "MemoryStore"]


class MemoryStore(InstancesMemory, OutboxMemory, ItemsMemory, InboundMemory, EventsMemory, FleetMemory, CloudMemory,
                  NumbersMemory, MemoryBase):
    """All persistence of wa-hub in dictionaries; lost when the object goes away."""
