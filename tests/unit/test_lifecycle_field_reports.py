"""Lifecycle field reports, reproduced on a fake clock (DESIGN §2, issue: supervisor).

Each test drives the real supervisor, send loop, store fake and sandbox engine; only time is fake.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.fakehub import HOOK_URL, FakeHub, build
from wahub.domain import ratelimit
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind
from wahub.edge import presenters

SEC = 1000
MIN = 60 * SEC


async def _ready_instance(fh: FakeHub, name: str = "shop") -> str:
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance(name, HOOK_URL, [])
    await fh.link(rt.id)
    assert fh.state(rt.id) == State.READY
    return rt.id


async def _send(fh: FakeHub, iid: str, n: int, prefix: str = "m") -> None:
    for i in range(n):
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": f"{prefix}{i}"},
                             header_key=f"{prefix}-{i}")


async def test_flapping_connection_hits_the_budget_then_error(tmp_path: Path) -> None:
    """Drops 2 s after every ready, ten times; three restart requests at once; at most 4 restarts / 10 min."""
    fh = build(None)
    iid = await _ready_instance(fh)
    await fh.world.fault(iid, "drop_after_ready", {"after_ms": 2 * SEC, "count": 10})
    await _send(fh, iid, 20)

    # three operator requests arrive together: one restart
    await asyncio.gather(*(fh.hub.restart(iid, "soft") for _ in range(3)))
    await fh.advance(10)
    assert len(await fh.store.restarts_since(iid, 0)) == 1

    await fh.advance(15 * MIN)
    restarts = await fh.store.restarts_since(iid, 0)
    assert fh.state(iid) == State.ERROR
    assert len(restarts) == 4
    assert ratelimit.max_in_any_window(restarts, 10 * MIN) <= 4
    # the automatic ladder waited 2 s, 4 s, 8 s after each drop
    transitions = list(reversed(await fh.store.transitions(iid, 100)))
    drops = [t.at for t in transitions if t.to_state == "disconnected"]
    auto = restarts[1:]
    waits = [r - max(d for d in drops if d <= r) for r in auto]
    assert waits == [2 * SEC, 4 * SEC, 8 * SEC]
    # never asked to send while not ready
    assert fh.spy.calls and all(state == "ready" for _, state, _ in fh.spy.calls)
    # one disconnected webhook per real transition into disconnected
    await fh.advance(MIN)
    assert len(fh.hooks.of("disconnected")) == len(drops)
    assert len(fh.hooks.of("change_state")) == len(transitions)
    # and no restarts after error, however long we wait
    await fh.advance(60 * MIN)
    assert len(await fh.store.restarts_since(iid, 0)) == 4
    assert fh.state(iid) == State.ERROR


async def test_logged_out_keeps_the_queue_and_never_restarts(tmp_path: Path) -> None:
    fh = build(None)
    iid = await _ready_instance(fh)
    await fh.hub.update_instance(iid, limits={"limit_per_minute": 1, "limit_per_hour": 1})
    await _send(fh, iid, 1, "first")
    await fh.advance(SEC)
    sends_before = len(fh.spy.calls)
    await _send(fh, iid, 5)  # deferred by the hour limit
    await fh.world.fault(iid, "auth_failure", {})
    await fh.advance(10)
    assert fh.state(iid) == State.LOGGED_OUT

    await fh.hub.update_instance(iid, limits={"limit_per_minute": None, "limit_per_hour": None})
    await fh.advance(3 * 60 * MIN)
    assert fh.state(iid) == State.LOGGED_OUT
    assert len(fh.spy.calls) == sends_before
    assert (await fh.store.queue_stats(iid)).by_status.get("queued") == 5
    assert await fh.store.restarts_since(iid, 0) == []
    assert len(fh.hooks.of("auth_failure")) == 1

    qrs_before = len(fh.hooks.of("qr"))
    await fh.hub.restart(iid, "hard")
    await fh.advance(SEC)
    assert fh.hub.instances[iid].qr is not None
    assert len(fh.hooks.of("qr")) == qrs_before + 1
    assert fh.state(iid) == State.CONNECTING


async def test_unscanned_qr_ends_in_needs_qr_without_retry(tmp_path: Path) -> None:
    fh = build(None, qr_window_ms=160 * SEC)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("shop", HOOK_URL, [])
    await fh.advance(10)
    first_qr_at = fh.clock.now_ms() - 10
    await fh.advance(159 * SEC)
    assert fh.state(rt.id) == State.CONNECTING
    assert len(fh.hooks.of("qr")) >= 8  # refreshed every 20 s...
    await fh.advance(2 * SEC)
    assert fh.state(rt.id) == State.NEEDS_QR  # ...without moving the window's end
    assert abs(rt.state_since - (first_qr_at + 160 * SEC)) <= 10
    qrs = len(fh.hooks.of("qr"))
    await fh.advance(2 * 60 * MIN)
    assert fh.state(rt.id) == State.NEEDS_QR
    assert len(fh.hooks.of("qr")) == qrs
    assert await fh.store.restarts_since(rt.id, 0) == []
    assert fh.spy.created == 1


async def test_qr_while_ready_is_ignored(tmp_path: Path) -> None:
    from wahub.engines.base import QrCode

    fh = build(None)
    iid = await _ready_instance(fh)
    rt = fh.hub.instances[iid]
    await rt.supervisor.on_event(QrCode("2@stray"))
    assert rt.qr is None
    assert fh.state(iid) == State.READY


async def test_temporary_ban_stops_sending_and_shows_expiry(tmp_path: Path) -> None:
    fh = build(None)
    iid = await _ready_instance(fh)
    await fh.world.fault(iid, "temporary_ban", {"expires_in_ms": 6 * 60 * MIN, "code": "101"})
    await fh.advance(10)
    assert fh.state(iid) == State.RESTRICTED
    calls = len(fh.spy.calls)
    await _send(fh, iid, 3)
    await fh.advance(60 * MIN)
    assert len(fh.spy.calls) == calls
    status = await presenters.status(fh.hub, iid)
    assert status["instance"]["state"] == "restricted"
    assert status["instance"]["restrictedUntil"] == fh.hooks.of("restricted")[0]["data"]["restrictedUntilMs"]
    assert status["queue"]["depth"] == 3
    assert await fh.store.restarts_since(iid, 0) == []


async def test_authenticated_without_ready_is_probed_then_retried(tmp_path: Path) -> None:
    fh = build(None, ready_probe_timeout_ms=30 * SEC)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("shop", HOOK_URL, [])
    await fh.world.fault(rt.id, "never_ready", {})
    await fh.link(rt.id)
    assert fh.state(rt.id) == State.CONNECTING
    await fh.advance(31 * SEC)
    assert fh.state(rt.id) == State.DISCONNECTED  # probe failed: a failed attempt, the ladder takes over
    await fh.world.fault(rt.id, "never_ready", {"enabled": False})
    await fh.advance(3 * SEC)
    assert fh.state(rt.id) == State.READY


async def test_restart_over_budget_is_refused(tmp_path: Path) -> None:
    from wahub.domain.errors import Conflict

    fh = build(None, max_restarts_per_window=2)
    iid = await _ready_instance(fh)
    for _ in range(2):
        await fh.hub.restart(iid, "soft")
        await fh.advance(SEC)
    try:
        await fh.hub.restart(iid, "soft")
    except Conflict as exc:
        assert "budget" in str(exc)
    else:
        raise AssertionError("third restart in the window was accepted")
    await fh.advance(11 * MIN)  # the window frees
    await fh.hub.restart(iid, "soft")


async def test_restart_with_thirty_instances_restores_one_by_one(tmp_path: Path) -> None:
    store = None
    first = build(tmp_path)
    await first.hub.start(restore=False)
    ids = []
    for i in range(30):
        rt = await first.hub.create_instance(f"shop-{i}", HOOK_URL, [])
        ids.append(rt.id)
        await first.advance(10)
        await first.world.scan(rt.id)
    await first.advance(SEC)
    assert all(first.state(i) == State.READY for i in ids)
    store = first.store
    await first.hub.stop()  # the process goes away; the store and the linked sessions stay

    # items that were queued when the process stopped
    for iid in ids:
        for j in range(5):
            await store.insert_item(queue_id=f"{iid}-{j}", instance_id=iid, idempotency_key=f"k{j}",
                                    key_source="body", kind="text", chat_id="201000000001@c.us",
                                    payload={"chatId": "201000000001@c.us", "message": f"m{j}"},
                                    fingerprint=f"fp{j}", now=first.clock.now_ms(), max_open=200)

    second = build(tmp_path, store=store, start_ms=first.clock.now_ms() + MIN, restore_stagger_ms=2 * SEC,
                   restore_concurrency=1)
    await second.hub.start()
    await second.advance(30 * 2 * SEC + 10 * MIN)
    assert all(second.state(i) == State.READY for i in ids)
    assert second.hooks.of("qr") == []  # valid sessions: no QR
    ready_at = []
    for iid in ids:
        trs = await store.transitions(iid, 100)
        ready_at.append(max(t.at for t in trs if t.to_state == "ready"))
    assert ready_at == sorted(ready_at)
    assert all(b - a >= 2 * SEC for a, b in zip(ready_at, ready_at[1:], strict=False))
    for iid in ids:
        stats = await store.queue_stats(iid)
        assert stats.by_status == {"sent": 5}
        times = [t for i, _, t in second.spy.calls if i == iid]
        assert ratelimit.max_in_any_window(times, MIN) <= 6
        assert all(b - a >= 500 for a, b in zip(times, times[1:], strict=False))
    await second.hub.stop()


async def test_a_send_that_may_have_reached_whatsapp_is_uncertain_not_retried(tmp_path: Path) -> None:
    """The engine delivered but its answer was lost (or its process died mid-send): never a second copy."""
    fh = build(None)
    iid = await _ready_instance(fh)
    await fh.world.fault(iid, "send_error", {"mode": "answer_lost", "count": 1})
    await _send(fh, iid, 2)
    await fh.advance(10 * MIN)
    texts = [d.text for d in fh.world.phone(iid).deliveries]
    assert texts == ["m0", "m1"]  # m0 reached WhatsApp once; m1 went on behind it
    stats = await fh.store.queue_stats(iid)
    assert stats.by_status == {"uncertain": 1, "sent": 1}
    uncertain = fh.hooks.of("message_uncertain")
    assert len(uncertain) == 1 and uncertain[0]["data"]["idempotencyKey"] == "m-0"
    item = await fh.hub.outbox.get_item_by_key(iid, "m-0")
    assert item.error_reason == "uncertain" and item.last_error and "answer was lost" in item.last_error
    await fh.hub.outbox.resend_item(iid, item.queue_id)  # an operator accepts a possible duplicate
    await fh.advance(MIN)
    assert [d.text for d in fh.world.phone(iid).deliveries] == ["m0", "m1", "m0"]


async def test_an_operator_can_always_restart_a_terminal_instance(tmp_path: Path) -> None:
    """Over budget, the instance is in `error`; the human it waits for is not locked out."""
    from wahub.domain.errors import Conflict

    fh = build(None, max_restarts_per_window=1)
    iid = await _ready_instance(fh)
    await fh.hub.restart(iid, "soft")  # uses the whole budget
    await fh.advance(SEC)
    try:
        await fh.hub.restart(iid, "soft")  # a running instance over budget: refused
    except Conflict:
        pass
    else:
        raise AssertionError("over-budget restart of a running instance was accepted")
    await fh.world.fault(iid, "disconnect", {})
    await fh.advance(MIN)
    assert fh.state(iid) == State.ERROR  # the ladder found the budget spent
    await fh.hub.restart(iid, "hard")  # the operator acts: accepted although over budget
    await fh.advance(SEC)
    assert fh.state(iid) == State.READY
    assert len(await fh.store.restarts_since(iid, 0)) == 2
