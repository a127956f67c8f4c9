"""The send loop's promises, asserted on the sandbox's own delivery stamps (fake clock, no I/O).

Each test drives the real hub (built by the composition root), send loop, store fake and sandbox
engine; only time is fake, and the sandbox stamps a delivery when the engine call arrives.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.support.fakehub import HOOK_URL, FakeHub, build
from wahub.domain import ratelimit
from wahub.domain.errors import ShuttingDown
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus, OutboxItem
from wahub.edge.status import status_of
from wahub.engines import base as eng
from wahub.runtime.clock import FakeClock, SystemClock
from wahub.runtime.sendloop import ClaimTimes
from wahub.store.memory import MemoryStore

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN


class SlowCommitStore(MemoryStore):
    """A store whose commits take a variable time on the fake clock (like a loaded database)."""

    def __init__(self, seed: int = 7) -> None:
        super().__init__()
        self.clock: FakeClock | None = None
        self.rng = random.Random(seed)

    async def _commit(self) -> None:
        assert self.clock is not None
        await self.clock.sleep(self.rng.choice([0, 3, 17, 45, 90, 140]))

    async def mark_handed_over(self, item: OutboxItem, now: int, *, chosen_message_id: str | None = None) -> None:
        await self._commit()
        await super().mark_handed_over(item, now, chosen_message_id=chosen_message_id)

    async def claim_next(self, instance_id: str, now: int, *, hand_over: bool = False,
                         chosen_message_id: str | None = None) -> OutboxItem | None:
        await self._commit()
        return await super().claim_next(instance_id, now, hand_over=hand_over, chosen_message_id=chosen_message_id)

    async def stamp_send(self, queue_id: str, at: int) -> None:
        await self._commit()
        await super().stamp_send(queue_id, at)


async def ready(fh: FakeHub, name: str = "shop", *, start: bool = True) -> str:
    if start:
        await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance(name, HOOK_URL, [])
    await fh.link(rt.id)
    assert fh.state(rt.id) == State.READY
    return rt.id


async def enqueue(fh: FakeHub, iid: str, n: int, prefix: str = "m") -> None:
    for i in range(n):
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": f"{prefix}{i}"},
                                    header_key=f"{prefix}-{i}")


def stamps(fh: FakeHub, iid: str) -> list[int]:
    """The sandbox's own record of when each send reached it (epoch ms)."""
    return [d.at_ms for d in fh.world.phones[iid].deliveries]


def assert_paced(times: list[int], per_minute: int, interval_ms: int) -> None:
    assert ratelimit.max_in_any_window(times, MIN) <= per_minute, times
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert not gaps or min(gaps) >= interval_ms, gaps


async def test_windows_and_interval_hold_on_engine_stamps_when_commits_take_variable_time() -> None:
    store = SlowCommitStore()
    fh = build(None, store=store)
    store.clock = fh.clock
    iid = await ready(fh)
    await enqueue(fh, iid, 30)
    for _ in range(6 * 60):
        await fh.advance(SEC)
    times = stamps(fh, iid)
    assert len(times) == 30
    assert_paced(times, 6, 500)
    # the persisted send instants are the engine's stamps, not the hand-over times
    assert sorted(await store.send_history(iid, 0)) == times


class ClaimClockStore(MemoryStore):
    """Claims that take ``claim_ms`` on the fake clock (queued behind other instances' writes, as in
    a loaded batch); notes the true time each claim that returned an item was asked."""

    def __init__(self, claim_ms: int = 0) -> None:
        super().__init__()
        self.clock: FakeClock | None = None
        self.claim_ms = claim_ms
        self.claimed_at: list[int] = []

    async def claim_next(self, instance_id: str, now: int, *, hand_over: bool = False,
                         chosen_message_id: str | None = None) -> OutboxItem | None:
        assert self.clock is not None
        asked = self.clock.now_ms()
        if self.claim_ms:
            await self.clock.sleep(self.claim_ms)
        item = await super().claim_next(instance_id, now, hand_over=hand_over, chosen_message_id=chosen_message_id)
        if item is not None:
            self.claimed_at.append(asked)
        return item


async def _paced_with_slow_claims(claim_ms: int, cap_ms: int) -> tuple[list[int], ClaimClockStore, str]:
    store = ClaimClockStore(claim_ms)
    fh = build(None, store=store, send_claim_lead_ms=cap_ms, send_interval_ms=2_000, max_sends_per_minute=20)
    store.clock = fh.clock
    iid = await ready(fh)
    await enqueue(fh, iid, 12)
    for _ in range(60):
        await fh.advance(SEC)
    times = stamps(fh, iid)
    assert len(times) == 12
    assert_paced(times, 20, 2_000)  # the interval and the window hold on the engine's stamps
    return times, store, iid


def _gaps(times: list[int]) -> list[int]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


async def test_slow_claims_are_started_early_so_sends_land_on_their_pacing_instant() -> None:
    """The claim lead: claims taking 60 ms (queued in a batch behind many instances' writes) are
    started that much before the pacing instant, so the interval is kept to the millisecond instead
    of being 60 ms late at every send."""
    times, store, iid = await _paced_with_slow_claims(claim_ms=60, cap_ms=500)
    assert _gaps(times) == [2_000] * 11  # without the lead: 2,060 each
    early = [t - c for t, c in zip(times, store.claimed_at, strict=True)]
    assert early == [60] * 12, early  # asked 60 ms ahead once a claim was seen to take 60 ms
    # ... but each hand-over (the send log a restart counts) is recorded at the pacing instant
    items, _ = await store.list_items(iid, statuses=None, limit=20, offset=0)
    assert all(i.handed_over_at == i.sent_at for i in items), [(i.handed_over_at, i.sent_at) for i in items]


async def test_the_claim_lead_is_bounded_by_its_cap_and_off_at_zero() -> None:
    """SEND_CLAIM_LEAD_MS caps the lead: claims of 150 ms with a cap of 80 leave 70 ms of lateness;
    a cap of 0 starts every claim at the pacing instant (the whole claim time is late)."""
    times, _, _ = await _paced_with_slow_claims(claim_ms=150, cap_ms=80)
    assert _gaps(times) == [2_070] * 11
    times, store, _ = await _paced_with_slow_claims(claim_ms=60, cap_ms=0)
    assert _gaps(times) == [2_060] * 11
    assert [t - c for t, c in zip(times, store.claimed_at, strict=True)] == [60] * 12


async def _item_waiting_for_its_instant(grace_ms: int) -> tuple[FakeHub, ClaimClockStore, str, OutboxItem]:
    """One slow claim (400 ms) sets the hub's lead; later claims are instant, so the next item is
    claimed and handed over 400 ms before its pacing instant and then waits for it: returned 300 ms
    before that instant."""
    store = ClaimClockStore(claim_ms=400)
    fh = build(None, store=store, send_interval_ms=5_000, shutdown_grace_ms=grace_ms)
    store.clock = fh.clock
    iid = await ready(fh)
    await enqueue(fh, iid, 1, prefix="a")
    await fh.advance(2 * SEC)
    (t1,) = stamps(fh, iid)
    store.claim_ms = 0
    await enqueue(fh, iid, 1, prefix="b")
    await fh.advance(t1 + 4_700 - fh.clock.now_ms())
    items, _ = await store.list_items(iid, statuses=None, limit=10, offset=0)
    b = next(i for i in items if i.payload["message"] == "b0")
    assert b.status == ItemStatus.SENDING and b.handed_over_at == t1 + 5_000, b
    assert len(stamps(fh, iid)) == 1  # b has not left
    return fh, store, iid, b


@pytest.mark.parametrize("grace_ms", [0, 100, 15_000])
async def test_a_clean_stop_puts_back_an_item_claimed_early_that_has_not_gone_out(grace_ms: int) -> None:
    """A stop (SIGTERM) while an item claimed ahead of its instant waits for it: nothing went out, so
    the item is queued again (not `uncertain` after the restart, no send counted), whatever the grace,
    and the stop does not wait for the instant to send it."""
    fh, store, iid, b = await _item_waiting_for_its_instant(grace_ms)
    await fh.hub.stop()
    assert len(stamps(fh, iid)) == 1  # not sent during the stop
    item = await store.get_item(b.queue_id)
    assert item is not None and item.status == ItemStatus.QUEUED and item.handed_over_at is None, item
    assert len(await store.send_history(iid, 0)) == 1
    fh2 = build(None, store=store, clock=fh.clock, send_interval_ms=5_000)
    fh2.world.phones = fh.world.phones
    await fh2.hub.start(restore=True)
    await fh2.advance(60 * SEC)
    item = await store.get_item(b.queue_id)
    assert item is not None and item.status == ItemStatus.SENT, item
    assert not fh2.hooks.names("message_uncertain")
    assert [d.text for d in fh2.world.phones[iid].deliveries] == ["a0", "b0"]
    await fh2.hub.stop()


async def test_sigterm_stops_every_send_loop_taking_items_before_the_hub_stops() -> None:
    """SIGTERM calls ``begin_shutdown`` at once; the drain comes only after the web server's own
    shutdown. Meanwhile no loop takes another item: the next message stays queued."""
    fh = build(None, send_interval_ms=5_000)
    iid = await ready(fh)
    await enqueue(fh, iid, 2)
    await fh.advance(SEC)
    assert len(stamps(fh, iid)) == 1
    fh.hub.begin_shutdown()
    await fh.advance(10 * SEC)  # the second message's instant passes before the hub's stop
    assert len(stamps(fh, iid)) == 1
    items, _ = await fh.store.list_items(iid, statuses=None, limit=10, offset=0)
    assert sorted(i.status.value for i in items) == ["queued", "sent"]
    await fh.hub.stop()


def test_claim_times_remember_the_longest_claim_of_the_window_only() -> None:
    claims = ClaimTimes(500, window_ms=300 * SEC, bucket_ms=10 * SEC)
    t0 = 1_767_225_600_000
    assert claims.lead_ms(t0) == 0
    claims.observe(t0, 120)
    claims.observe(t0 + 15 * SEC, 3)
    assert claims.lead_ms(t0 + 20 * SEC) == 120  # one slow burst sets the lead for the next rounds
    claims.observe(t0 + 30 * SEC, 9_000)  # a claim held by a locked database: at most the cap
    assert claims.lead_ms(t0 + 30 * SEC) == 500
    assert claims.lead_ms(t0 + 311 * SEC) == 500
    assert claims.lead_ms(t0 + 341 * SEC) == 0  # the slow claims left the window; quiet claims since
    claims.observe(t0 + 342 * SEC, 2)
    assert claims.lead_ms(t0 + 342 * SEC) == 2
    claims.observe(t0 + 343 * SEC, -50)  # a backward clock step is no claim time
    assert claims.lead_ms(t0 + 343 * SEC) == 2
    assert claims.lead_ms(t0 + 100 * SEC) == 0  # the clock stepped back past every bucket
    off = ClaimTimes(0)
    off.observe(t0, 300)
    assert off.lead_ms(t0) == 0


def _stepped_clock(step: dict[str, int]) -> Any:
    def make(true: FakeClock) -> SystemClock:
        return SystemClock(wall_ns=lambda: (true.now_ms() + step["ms"]) * 1_000_000,
                           mono_ns=lambda: true.now_ms() * 1_000_000, sleeper=true.sleep)
    return make


async def test_wall_clock_steps_while_running_neither_burst_nor_stall() -> None:
    step = {"ms": 0}
    fh = build(None, hub_clock=_stepped_clock(step))
    iid = await ready(fh)
    await enqueue(fh, iid, 24)
    await fh.advance(30 * SEC)
    step["ms"] = HOUR  # the wall clock jumps forward
    await fh.advance(90 * SEC)
    step["ms"] = -HOUR  # ...and back
    for _ in range(4 * 60):
        await fh.advance(SEC)
    times = stamps(fh, iid)
    assert len(times) == 24
    assert_paced(times, 6, 500)
    # no stall: after the first minute the sends come one minute-window after another
    starts = times[::6]
    assert all(b - a <= MIN + SEC for a, b in zip(starts, starts[1:], strict=False)), starts


async def test_a_backward_step_across_a_restart_costs_at_most_one_interval() -> None:
    store = MemoryStore()
    true = FakeClock()
    fh = build(None, store=store, clock=true)
    iid = await ready(fh)
    await enqueue(fh, iid, 6)
    await fh.advance(10 * SEC)
    first = stamps(fh, iid)
    assert len(first) == 6
    await fh.hub.stop()  # the fake store keeps its rows across the "restart"

    # restart with the wall clock one hour behind; same store, same simulated phone
    step = {"ms": -HOUR}
    fh2 = build(None, store=store, clock=true, hub_clock=_stepped_clock(step))
    fh2.world.phones = fh.world.phones
    await fh2.hub.start(restore=True)
    await fh2.advance(5 * SEC)
    assert fh2.state(iid) == State.READY
    await enqueue(fh2, iid, 6, prefix="after")
    for _ in range(3 * 60):
        await fh2.advance(SEC)
    times = stamps(fh2, iid)
    assert len(times) == 12
    assert_paced(times, 6, 500)
    # the 7th send waited for the rolling minute of the first six, not for an hour
    assert times[6] - times[0] <= MIN + 11 * SEC


async def test_maybe_sent_errors_become_uncertain_and_are_never_sent_twice() -> None:
    fh = build(None)
    iid = await ready(fh)
    await fh.world.fault(iid, "send_error", {"mode": "answer_lost", "count": 1})
    await enqueue(fh, iid, 1)
    await fh.advance(10 * MIN)
    assert len(stamps(fh, iid)) == 1
    items, _ = await fh.hub.outbox.list_items(iid)
    assert items[0].status == ItemStatus.UNCERTAIN
    assert fh.hooks.names("message_uncertain") == ["message_uncertain"]


async def test_an_unknown_engine_error_after_the_call_started_is_uncertain_not_retried() -> None:
    fh = build(None)
    iid = await ready(fh)
    calls: list[str] = []

    async def explode(_iid: str, _chat: str, text: str) -> None:
        calls.append(text)
        raise RuntimeError("engine bug")

    fh.spy.on_send = explode
    await enqueue(fh, iid, 1)
    await fh.advance(10 * MIN)
    assert calls == ["m0"]
    items, _ = await fh.hub.outbox.list_items(iid)
    assert items[0].status == ItemStatus.UNCERTAIN


async def test_an_uncertain_send_is_reconciled_by_a_receipt_for_its_chosen_id() -> None:
    fh = build(None)
    fh.spy.choose_ids = True
    iid = await ready(fh)
    await fh.world.fault(iid, "send_error", {"mode": "answer_lost_silent", "count": 1})
    await enqueue(fh, iid, 1)
    await fh.advance(5 * SEC)
    items, _ = await fh.hub.outbox.list_items(iid)
    assert items[0].status == ItemStatus.UNCERTAIN
    delivered = fh.world.phones[iid].deliveries
    assert len(delivered) == 1 and delivered[0].message_id == items[0].chosen_message_id
    await fh.world.inject_ack(iid, [delivered[0].message_id], "read")
    await fh.advance(10 * MIN)
    item = await fh.hub.outbox.get_item(iid, items[0].queue_id)
    assert item.status == ItemStatus.SENT and item.message_id == delivered[0].message_id
    sent = fh.hooks.of("message_sent")
    assert len(sent) == 1 and sent[0]["data"]["reconciled"] is True
    assert fh.hooks.names("message_uncertain") == []  # evidence came inside the window
    assert len(stamps(fh, iid)) == 1


async def test_without_evidence_an_uncertain_send_is_reported_when_the_window_ends() -> None:
    fh = build(None, uncertain_evidence_window_seconds=120)
    fh.spy.choose_ids = True
    iid = await ready(fh)
    await fh.world.fault(iid, "send_error", {"mode": "answer_lost_silent", "count": 1})
    await enqueue(fh, iid, 1)
    await fh.advance(60 * SEC)
    assert fh.hooks.names("message_uncertain") == []
    await fh.advance(70 * SEC)
    assert fh.hooks.names("message_uncertain") == ["message_uncertain"]
    # evidence after the window changes nothing
    mid = fh.world.phones[iid].deliveries[0].message_id
    await fh.world.inject_ack(iid, [mid], "delivered")
    await fh.advance(SEC)
    items, _ = await fh.hub.outbox.list_items(iid)
    assert items[0].status == ItemStatus.UNCERTAIN


async def test_a_transient_error_is_still_retried() -> None:
    fh = build(None)
    iid = await ready(fh)
    await fh.world.fault(iid, "send_error", {"mode": "transient", "count": 1})
    await enqueue(fh, iid, 1)
    await fh.advance(2 * MIN)
    items, _ = await fh.hub.outbox.list_items(iid)
    assert items[0].status == ItemStatus.SENT and items[0].attempts == 2


async def test_a_keyless_retry_across_a_window_boundary_is_the_same_item() -> None:
    window = 600 * SEC
    boundary = (1_767_225_600_000 // window + 1) * window
    fh = build(None, start_ms=boundary - 40 * SEC)
    iid = await ready(fh)
    await fh.advance(boundary - 1_500 - fh.clock.now_ms())
    body = {"chatId": "+20 100 000 0001", "message": "your order #1001"}
    a = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, dict(body), header_key=None)
    await fh.advance(3 * SEC)
    assert fh.clock.now_ms() == boundary + 1_500
    b = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, dict(body), header_key=None)
    assert b.item.queue_id == a.item.queue_id and b.replay
    await fh.advance(MIN)
    assert len(stamps(fh, iid)) == 1
    # the same text well after the window is a new message on purpose
    await fh.advance(window)
    c = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, dict(body), header_key=None)
    assert c.item.queue_id != a.item.queue_id


async def test_a_slow_engine_call_does_not_delay_another_instances_pacing() -> None:
    fh = build(None)
    slow = await ready(fh, "slow")
    fast = await ready(fh, "fast", start=False)
    await fh.world.fault(slow, "slow_send", {"latency_ms": 50_000})
    await enqueue(fh, slow, 3, prefix="s")
    await enqueue(fh, fast, 6, prefix="f")
    await fh.advance(10 * SEC)
    fast_times = stamps(fh, fast)
    assert len(fast_times) == 6
    assert fast_times[-1] - fast_times[0] <= 5 * 500 + 100  # paced by its own interval only
    assert [i for i, _, _ in fh.spy.calls].count(slow) == 1  # the slow one is still inside its first call


async def test_a_stop_refuses_new_sends_and_lets_the_call_in_flight_finish() -> None:
    fh = build(None, shutdown_grace_ms=60_000)
    iid = await ready(fh)
    await fh.world.fault(iid, "slow_send", {"latency_ms": 3_000})
    await enqueue(fh, iid, 2)
    await fh.advance(1_000)  # the first call is in flight
    stopping = asyncio.ensure_future(fh.hub.stop())
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown) as refused:
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": "late"},
                                    header_key="late")
    assert status_of(refused.value) == 503 and refused.value.retry_after_s > 0
    await fh.advance(3_000)
    await stopping
    items, _ = await fh.store.list_items(iid, statuses=None, limit=10, offset=0)
    assert [i.status for i in items] == [ItemStatus.SENT, ItemStatus.QUEUED]  # nothing uncertain
    assert len(stamps(fh, iid)) == 1


async def test_a_from_me_echo_reconciles_a_send_whose_answer_is_still_out() -> None:
    fh = build(None, shutdown_grace_ms=0)
    fh.spy.choose_ids = True
    iid = await ready(fh)
    await fh.world.fault(iid, "slow_send", {"latency_ms": 100_000})  # the answer is slow to come back
    await enqueue(fh, iid, 1)
    await fh.advance(1_000)
    items, _ = await fh.hub.outbox.list_items(iid)
    chosen = items[0].chosen_message_id
    assert items[0].status == ItemStatus.SENDING and chosen
    await fh.hub.inbound.on_event(fh.hub.get(iid), eng.InboundMessage(
        message_id=chosen, chat_id="201000000001@c.us", sender="me@c.us", text="m0", timestamp=0, from_me=True))
    item = await fh.hub.outbox.get_item(iid, items[0].queue_id)
    assert item.status == ItemStatus.SENT and item.message_id == chosen
    await fh.advance(110_000)  # the call's own answer arrives later: still one sent item, one event
    item = await fh.hub.outbox.get_item(iid, items[0].queue_id)
    assert item.status == ItemStatus.SENT
    assert fh.hooks.names("message_uncertain") == []
    assert [b["data"].get("reconciled") for b in fh.hooks.of("message_sent")] == [True]


class CountingStore(MemoryStore):
    """Counts the send loop's reads and claims."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def next_due_at(self, instance_id: str) -> int | None:
        self.calls += 1
        return await super().next_due_at(instance_id)

    async def send_history(self, instance_id: str, since: int) -> list[int]:
        self.calls += 1
        return await super().send_history(instance_id, since)

    async def claim_next(self, instance_id: str, now: int, **kw: Any) -> OutboxItem | None:
        self.calls += 1
        return await super().claim_next(instance_id, now, **kw)


async def test_enqueues_while_the_next_send_is_an_hour_away_run_no_send_loop_query() -> None:
    store = CountingStore()
    fh = build(None, store=store, max_sends_per_minute=1, max_sends_per_hour=1)
    iid = await ready(fh)
    await enqueue(fh, iid, 1, prefix="first")
    await fh.advance(5 * SEC)
    assert len(stamps(fh, iid)) == 1
    store.calls = 0
    await enqueue(fh, iid, 20)
    await fh.advance(10 * SEC)
    assert store.calls == 0  # the hour limit is the loop's next wake-up: no enqueue can go out sooner
    await fh.advance(HOUR)
    times = stamps(fh, iid)
    assert len(times) == 2 and times[1] - times[0] >= HOUR  # the queue still drains when the hour is up


async def test_an_uncertain_item_waiting_for_its_report_is_reported_after_a_stop_and_start() -> None:
    store = MemoryStore()
    true = FakeClock()
    fh = build(None, store=store, clock=true, uncertain_evidence_window_seconds=120)
    fh.spy.choose_ids = True
    iid = await ready(fh)
    await fh.world.fault(iid, "send_error", {"mode": "answer_lost_silent", "count": 1})
    await enqueue(fh, iid, 1)
    await fh.advance(30 * SEC)  # uncertain, its evidence window still open
    assert fh.hooks.names("message_uncertain") == []
    await fh.hub.stop()  # a clean stop before the window ends

    fh2 = build(None, store=store, clock=true, uncertain_evidence_window_seconds=120)
    fh2.world.phones = fh.world.phones
    await fh2.hub.start(restore=True)
    await fh2.advance(60 * SEC)
    assert fh2.hooks.names("message_uncertain") == []  # still inside the window that began before the stop
    await fh2.advance(60 * SEC)
    assert fh2.hooks.names("message_uncertain") == ["message_uncertain"]
    await fh2.hub.stop()

    fh3 = build(None, store=store, clock=true, uncertain_evidence_window_seconds=120)
    fh3.world.phones = fh.world.phones
    await fh3.hub.start(restore=True)
    await fh3.advance(200 * SEC)
    assert fh3.hooks.names("message_uncertain") == []  # reported once, not once per start
    assert len(fh.world.phones[iid].deliveries) == 1  # and never sent again


async def test_logout_then_create_again_keeps_sent_keys_and_the_rate_windows() -> None:
    fh = build(None)
    iid = await ready(fh)
    await enqueue(fh, iid, 6)
    await fh.advance(10 * SEC)
    before = list(fh.world.phones[iid].deliveries)
    assert len(before) == 6
    await fh.hub.delete_instance(iid)  # what the existing wa-hub's logout does
    assert iid not in fh.hub.instances
    await ready(fh, start=False)  # the merchant creates it again and scans (the same account)
    retried = [await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": f"m{i}"},
                                           header_key=f"m-{i}") for i in range(6)]  # the app retries its keys
    assert all(r.replay and r.item.status == ItemStatus.SENT for r in retried)
    await enqueue(fh, iid, 6, prefix="new")  # and sends six new ones
    await fh.advance(3 * MIN)
    deliveries = before + [d for d in fh.world.phones[iid].deliveries if d not in before]
    texts = [d.text for d in deliveries]
    assert sorted(texts) == sorted([f"m{i}" for i in range(6)] + [f"new{i}" for i in range(6)]), texts
    assert_paced([d.at_ms for d in deliveries], 6, 500)  # the minute of the first six still counted



class DyingStore(ClaimClockStore):
    """A store whose process dies (never answers again) once ``dead`` is set: the outcome of a send
    that reached the engine is never written, as after a SIGKILL between the call and its commit."""

    dead = False

    async def mark_sent(self, item: OutboxItem, **kw: Any) -> bool:
        if self.dead:
            await asyncio.Event().wait()
        return await super().mark_sent(item, **kw)


async def test_a_claim_lead_crash_after_the_call_keeps_the_interval_on_the_engine_stamps_across_a_restart() -> None:
    """SEND_CLAIM_LEAD_MS: a kill after the engine call (the message left) but before its outcome is
    written must not let the first send after the restart come sooner than the interval after that
    message's own stamp (the send log kept the claim's time, ``lead`` before the real send)."""
    lead, interval = 1_000, 20 * SEC
    store = DyingStore(claim_ms=900)  # claims this slow make the lead 900 ms
    fh = build(None, store=store, send_claim_lead_ms=lead, send_interval_ms=interval)
    store.clock = fh.clock
    iid = await ready(fh)
    await enqueue(fh, iid, 1, prefix="a")
    await fh.advance(2 * SEC)
    assert len(stamps(fh, iid)) == 1
    store.dead = True
    await enqueue(fh, iid, 1, prefix="b")
    await fh.advance(interval + SEC)
    assert len(stamps(fh, iid)) == 2  # the second reached "WhatsApp"; the process dies before its outcome
    store.dead = False
    # the restart: the first hub is abandoned (its clock never moves again); same store, same phone
    true = FakeClock(fh.clock.now_ms())
    fh2 = build(None, store=store, clock=true, send_claim_lead_ms=lead, send_interval_ms=interval)
    store.clock, store.claim_ms = true, 0  # instant claims now: nothing hides a send logged too early
    fh2.world.phones = fh.world.phones
    await fh2.hub.start(restore=True)
    await fh2.advance(5 * SEC)
    assert fh2.state(iid) == State.READY
    await enqueue(fh2, iid, 1, prefix="c")
    for _ in range(60):
        await fh2.advance(SEC)
    times = stamps(fh2, iid)
    assert len(times) == 3
    assert_paced(times, 30, interval)
