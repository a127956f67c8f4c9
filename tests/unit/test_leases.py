"""Leases in the runtime (fake clock, in-memory store): fair claims, and a node that lost an instance
sends nothing more for it, as the sandbox's own deliveries show."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fakehub import HOOK_URL, FakeHub, build
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.runtime.clock import FakeClock
from wahub.runtime.leases import LeasePolicy, Leases, fair_share
from wahub.store.memory import MemoryStore
from wahub.store.records import LeaseRecord

SEC = 1000
TTL_S = 3


async def _noop(*_args: object) -> None:
    return None


def test_the_fair_share_is_a_third_of_the_fleet_for_three_nodes_capped_by_capacity() -> None:
    assert fair_share(300, 3, 1000) == 100
    assert fair_share(301, 3, 1000) == 101
    assert fair_share(300, 2, 120) == 120
    assert fair_share(5, 0, 10) == 5


async def test_a_claim_round_takes_only_the_node_s_share_of_free_instances() -> None:
    clock = FakeClock()
    store = MemoryStore()
    for i in range(10):
        await store.create_instance(id=f"i{i}", name=f"I{i}", webhook_url=None, webhook_events=[],
                                    webhook_secret=None, now=clock.now_ms())
    for other in ("n2", "n3"):
        await store.heartbeat(other, address=None, capacity=100, now=clock.now_ms())
    adopted: list[str] = []

    async def adopt(iid: str, _uncertain: object) -> None:
        adopted.append(iid)

    leases = Leases(store, clock, LeasePolicy("n1", None, capacity=100, ttl_ms=TTL_S * SEC), adopt=adopt,
                    drop=_noop, sync=lambda: _noop())
    await leases.start()
    await leases.renew()
    await leases.claim()
    assert len(adopted) == 4 and leases.owned == set(adopted)  # ceil(10 / 3)
    await leases.claim()
    assert len(adopted) == 4, "a second round takes nothing beyond the share"
    await leases.halt()


async def _ready_on_a_leased_hub(fh: FakeHub) -> str:
    await fh.hub.start()
    rt = await fh.hub.create_instance("shop", HOOK_URL, [])
    await fh.advance(SEC + 10)  # the first claim round comes one period after the start
    assert fh.hub.runs_here(rt.id)
    await fh.advance(10)
    await fh.world.scan(rt.id)
    await fh.advance(10)
    assert fh.state(rt.id) == State.READY
    return rt.id


async def _enqueue(fh: FakeHub, iid: str, n: int) -> None:
    for i in range(n):
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": f"m{i}"},
                                    header_key=f"k-{i}")


@pytest.fixture
def leased() -> FakeHub:
    return build(None, node_leases="on", node_id="n1", node_lease_ttl_seconds=TTL_S, node_capacity=10)


async def test_once_another_node_took_the_lease_the_old_owner_sends_nothing_more(leased: FakeHub) -> None:
    fh = leased
    iid = await _ready_on_a_leased_hub(fh)
    await _enqueue(fh, iid, 10)
    await fh.advance(1200)
    sent_before = len(fh.world.phones[iid].deliveries)
    assert 1 <= sent_before < 10
    # n2 claims the instance (as after n1's lease expired): the row now names n2 under the next token
    store = fh.store
    lease = store._leases[iid]
    lease.update(owner="n2", token=lease["token"] + 1, expires_at=fh.clock.now_ms() + TTL_S * SEC)
    for _ in range(30):  # n2 stays alive: it renews and beats as a node does
        await store.renew_leases("n2", now=fh.clock.now_ms(), ttl_ms=TTL_S * SEC)
        await store.heartbeat("n2", address=None, capacity=10, now=fh.clock.now_ms())
        await fh.advance(SEC)
    assert len(fh.world.phones[iid].deliveries) == sent_before, "a fenced-out node kept sending"
    assert not fh.hub.runs_here(iid)
    rt = fh.hub.instances[iid]
    assert rt.engine is None and not rt.sendloop.running
    assert rt.owner == "n2"  # the view names the new owner
    queued = (await store.queue_stats(iid)).by_status.get(ItemStatus.QUEUED.value, 0)
    assert queued == 10 - sent_before  # nothing half-written: the rest waits for n2
    await fh.hub.stop()


async def test_a_node_whose_lease_validity_lapsed_does_not_call_the_engine(leased: FakeHub) -> None:
    fh = leased
    iid = await _ready_on_a_leased_hub(fh)
    rt = fh.hub.instances[iid]
    rt.lease_valid = lambda: False  # e.g. the process was paused past its lease
    await _enqueue(fh, iid, 3)
    await fh.advance(5 * SEC)
    assert fh.world.phones[iid].deliveries == []
    assert fh.spy.calls == []
    await fh.hub.stop()


async def test_an_item_stored_by_another_node_without_a_wake_up_goes_out_within_a_lease_period(
        leased: FakeHub) -> None:
    fh = leased
    iid = await _ready_on_a_leased_hub(fh)
    await fh.advance(5 * SEC)  # the loop parks: nothing queued
    # another node stored an item; its NOTIFY never arrived (a LISTEN connection was lost)
    await fh.store.insert_item(queue_id="q_elsewhere", instance_id=iid, idempotency_key="elsewhere",
                               key_source="header", kind="text", chat_id="201000000001@c.us",
                               payload={"message": "from another node"}, fingerprint="f" * 64,
                               now=fh.clock.now_ms(), max_open=100)
    await fh.advance(TTL_S * SEC // 3 + 100)  # one lease period: the owner's sweep finds it
    assert [d.text for d in fh.world.phones[iid].deliveries] == ["from another node"]
    await fh.hub.stop()


@pytest.mark.timeout(10)
async def test_an_instance_claimed_here_while_its_creation_is_answered_starts_and_shows_its_state() -> None:
    fh = build(None, node_leases="on", node_id="n1", node_lease_ttl_seconds=TTL_S, node_capacity=10,
               world_kwargs={"auto_link_ms": 400})
    await fh.hub.start()
    await fh.advance(SEC + 10)  # the first claim round: the node is confirmed and claims rounds run
    assert fh.hub.placement is not None
    leases = fh.hub.placement.leases
    insert = fh.store.create_instance

    async def insert_then_claim(**row: object) -> object:
        rec = await insert(**row)
        # The claim loop's round (another task, woken by any creation) ran between the INSERT's
        # commit and the creating request's turn: it claimed and adopted the new instance.
        await leases.claim()
        return rec

    fh.store.create_instance = insert_then_claim
    rt = await fh.hub.create_instance("shop", HOOK_URL, [])
    fh.store.create_instance = insert
    assert fh.hub.runs_here(rt.id)
    await fh.advance(2 * SEC)  # boot, QR, automatic link after 400 ms
    shown = fh.hub.instances[rt.id]
    assert shown.engine is not None, "claimed here but no engine runs"
    assert (shown.state, shown.owner) == (State.READY, "n1")
    stored = await fh.store.get_instance(rt.id)
    assert stored is not None and stored.state == State.READY.value
    await fh.advance(TTL_S * SEC)  # a few claim rounds and their view refreshes change nothing
    assert (fh.hub.instances[rt.id].state, fh.hub.instances[rt.id].owner) == (State.READY, "n1")
    await fh.hub.stop()


async def test_an_instance_held_here_whose_adoption_failed_is_run_by_a_later_round() -> None:
    """The lease is claimed (and renewed, so no other node takes it) but starting the instance failed
    once: a later claim round finds it held with nothing running it and runs it; its queue drains."""
    fh = build(None, node_leases="on", node_id="n1", node_lease_ttl_seconds=TTL_S, node_capacity=10,
               world_kwargs={"auto_link_ms": 400})
    await fh.hub.start()
    await fh.advance(SEC + 10)
    assert fh.hub.placement is not None
    placement = fh.hub.placement
    adopt = placement._adopt
    failures: list[str] = []

    async def fails_once(instance_id: str, uncertain: list[object]) -> None:
        if not failures:
            failures.append(instance_id)
            raise RuntimeError("the instance record could not be read")
        await adopt(instance_id, uncertain)  # type: ignore[arg-type]

    placement._adopt = fails_once  # type: ignore[method-assign]
    placement.leases.adopt = fails_once
    rt = await fh.hub.create_instance("shop", HOOK_URL, [])
    await fh.advance(SEC)  # the claim round: claimed, adoption failed
    assert failures == [rt.id] and fh.hub.runs_here(rt.id)
    await fh.hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": "201000000001", "message": "hi"}, header_key="k1")
    await fh.advance(TTL_S * SEC)  # later rounds
    shown = fh.hub.instances[rt.id]
    assert shown.engine is not None, "held here but nothing runs it"
    assert (shown.state, shown.owner) == (State.READY, "n1")
    assert [d.text for d in fh.world.phones[rt.id].deliveries] == ["hi"]
    await fh.hub.stop()


async def test_leases_claimed_while_a_renewal_is_in_flight_keep_running_and_are_not_given_back() -> None:
    """The renewal's statement ran before the claim round's commit (its answer lacks the leases just
    claimed) and its answer arrives after it: the instances just claimed are neither stopped as lost
    nor given back as strays, and the next rounds neither claim more nor less than the share."""
    clock = FakeClock()
    store = MemoryStore()
    for i in range(4):
        await store.create_instance(id=f"i{i}", name=f"I{i}", webhook_url=None, webhook_events=[],
                                    webhook_secret=None, now=clock.now_ms())
    await store.heartbeat("n2", address=None, capacity=100, now=clock.now_ms())
    dropped: list[str] = []

    async def drop(iid: str, _why: str) -> None:
        dropped.append(iid)

    leases = Leases(store, clock, LeasePolicy("n1", None, capacity=100, ttl_ms=TTL_S * SEC), adopt=_noop,
                    drop=drop, sync=lambda: _noop())
    await store.heartbeat("n1", address=None, capacity=100, now=clock.now_ms())
    store.fence_as("n1")  # what start() does, without its loops: the rounds run here, one by one
    await leases.renew()
    renew = store.renew_leases
    answered, resume = asyncio.Event(), asyncio.Event()

    async def answer_late(node_id: str, *, now: int, ttl_ms: int) -> list[LeaseRecord]:
        rows = await renew(node_id, now=now, ttl_ms=ttl_ms)  # the statement: before the claim
        answered.set()
        await resume.wait()
        return rows

    store.renew_leases = answer_late  # type: ignore[method-assign]
    renewal = asyncio.ensure_future(leases.renew())
    await answered.wait()
    await leases.claim()  # ceil(4 / 2) = 2
    resume.set()
    await renewal
    store.renew_leases = renew  # type: ignore[method-assign]
    mine = set(leases.owned)
    assert len(mine) == 2 and dropped == []
    for _ in range(3):
        await clock.advance(TTL_S * SEC // 3)
        await store.heartbeat("n2", address=None, capacity=100, now=clock.now_ms())  # n2 stays live
        await leases.renew()
        await leases.claim()
    assert leases.owned == mine and dropped == []
    held = {le.instance_id for le in await store.list_leases() if le.owner == "n1"}
    assert held == mine and all(store.holds(iid) for iid in mine)
