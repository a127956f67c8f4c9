"""One identity per person: lid ↔ phone pairs learnt from events, remembered in the store, answered from memory."""

from __future__ import annotations

from wahub.runtime.clock import FakeClock
from wahub.runtime.identities import Identities
from wahub.store.memory import MemoryStore

LID, PHONE = "99887766554433@lid", "201000000002@c.us"


class CountingStore(MemoryStore):
    """The memory store, counting identity reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes = 0

    async def find_identity(self, instance_id: str, jid: str) -> tuple[str, str] | None:
        self.reads += 1
        return await super().find_identity(instance_id, jid)

    async def remember_identity(self, instance_id: str, lid: str, phone: str, *, now: int) -> None:
        self.writes += 1
        await super().remember_identity(instance_id, lid, phone, now=now)


async def test_a_pair_told_once_names_the_other_id_later_in_both_directions() -> None:
    store = CountingStore()
    ids = Identities(store, FakeClock())
    assert await ids.other("a", PHONE, None) is None  # not known yet
    assert await ids.other("a", LID, PHONE) == PHONE  # told: remembered
    assert await ids.other("a", LID, None) == PHONE
    assert await ids.other("a", PHONE, None) == LID  # the earlier "unknown" answer is replaced
    assert await ids.other("b", LID, None) is None  # per instance
    assert await store.find_identity("a", LID) == (LID, PHONE)  # in the store, not only in memory
    assert await Identities(store, FakeClock()).other("a", LID, None) == PHONE  # a restarted process knows it


async def test_known_pairs_cost_no_store_write_and_lookups_are_cached() -> None:
    store = CountingStore()
    ids = Identities(store, FakeClock())
    for _ in range(5):
        await ids.other("a", LID, PHONE)
        await ids.other("a", "201000000003@c.us", None)
    assert store.writes == 1 and store.reads == 1


async def test_groups_are_nobodys_other_id_and_a_moved_lid_updates_both_sides() -> None:
    ids = Identities(MemoryStore(), FakeClock())
    group = "120363000000000001@g.us"
    assert await ids.other("a", group, None) is None
    assert await ids.other("a", group, LID) == LID  # passed through, not learnt
    assert await ids.other("a", LID, None) is None
    await ids.other("a", LID, PHONE)
    await ids.other("a", LID, "201000000003@c.us")  # WhatsApp now pairs the lid with another phone
    assert await ids.other("a", LID, None) == "201000000003@c.us"
    assert await ids.other("a", PHONE, None) is None
    ids.forget("a")
    assert await ids.other("a", "201000000003@c.us", None) == LID  # from the store again
