"""What wa-hub says about an instance is what is true: restarts, restore, zombie sessions,
unreachable WhatsApp, stale logins and a store that fails (one test per fault).

Each test drives the real hub (supervisor, send loop, sandbox engine) on a fake clock and looks
where a user looks: the HTTP API, the sandbox's own records, the metrics page.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fakehub import HOOK_URL, FakeHub, build
from tests.support.polling import until
from tests.support.server import API_KEY
from wahub.domain.lifecycle import State
from wahub.store.sql import SqlStore
from wahub.web.app import create_app

pytestmark = pytest.mark.timeout(60)

SEC = 1000
MIN = 60 * SEC


def sqlite_store(tmp_path: Path, **kw: Any) -> SqlStore:
    return SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'wahub.sqlite3'}", **kw)


@asynccontextmanager
async def api(fh: FakeHub) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fh.hub, manage_hub=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        yield client


async def ready_instance(fh: FakeHub, name: str = "shop") -> str:
    if not fh.hub.started:
        await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance(name, HOOK_URL, [])
    await advance_until(fh, lambda: fh.hub.instances[rt.id].qr is not None)
    await fh.world.scan(rt.id)
    await advance_until(fh, lambda: fh.state(rt.id) == State.READY)
    return rt.id


async def advance_until(fh: FakeHub, cond: Any, step_ms: int = 10) -> None:
    """Advance the fake clock in small steps until ``cond()`` holds (SQL calls finish in real time)."""

    async def check() -> bool:
        await fh.advance(step_ms)
        return bool(cond())

    await until(check, within_s=20)


async def status(c: httpx.AsyncClient, iid: str) -> dict[str, Any]:
    r = await c.get(f"/instances/{iid}/status")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_five_concurrent_restarts_are_one_restart_and_one_charge(tmp_path: Path) -> None:
    fh = build(tmp_path, store=sqlite_store(tmp_path))
    iid = await ready_instance(fh)
    try:
        async with api(fh) as c:
            answers = await asyncio.gather(*(c.post(f"/instances/{iid}/restart", json={"type": "soft"})
                                             for _ in range(5)))
            assert [r.status_code for r in answers] == [200] * 5
            assert len({r.text for r in answers}) == 1  # every caller got the same answer
            sup = fh.hub.instances[iid].supervisor
            await advance_until(fh, lambda: fh.state(iid) == State.READY and sup.settled.is_set())
            st = await status(c, iid)
            assert st["instance"]["state"] == "ready"
            assert st["reconnection"]["restartsInWindow"] == 1
            assert len(await fh.store.restarts_since(iid, 0)) == 1
    finally:
        await fh.hub.stop()


async def test_no_ready_without_an_engine_after_a_process_restart(tmp_path: Path) -> None:
    fh = build(tmp_path, store=sqlite_store(tmp_path))
    first = await ready_instance(fh)
    iid = await ready_instance(fh, "second")  # restored after the first, 2 s later
    await fh.hub.stop()  # the stored states stay "ready", as after a SIGKILL

    fh2 = build(tmp_path, store=sqlite_store(tmp_path), clock=fh.clock, restore_stagger_ms=2000,
                restore_concurrency=1)
    await fh2.hub.start(restore=True)
    try:
        async with api(fh2) as c:  # nothing runs yet for the second: its restore waits its turn
            await advance_until(fh2, lambda: fh2.state(first) == State.READY)
            st = await status(c, iid)
            assert st["instance"]["state"] == "initializing"
            assert st["queue"]["sendLoopRunning"] is False
            cs = (await c.get(f"/instances/{iid}/client/status")).json()["clientStatus"]
            assert cs["instanceStatus"] != "ready" and cs["state"] == "initializing"
            me = await c.get(f"/instances/{iid}/client/me")
            assert me.status_code == 400 and "initializing" in me.json()["error"]

            await advance_until(fh2, lambda: fh2.state(iid) == State.READY)  # the engine reports ready again
            st = await status(c, iid)
            assert st["instance"]["state"] == "ready" and st["queue"]["sendLoopRunning"] is True
            assert (await c.get(f"/instances/{iid}/client/me")).status_code == 200
    finally:
        await fh2.hub.stop()


async def test_restore_connects_many_at_once_but_spread(tmp_path: Path) -> None:
    fh = build(tmp_path, restore_stagger_ms=2000, restore_concurrency=10)
    await fh.hub.start(restore=False)
    ids = []
    for i in range(40):
        fh.world.phone(f"shop{i}").linked = True  # a stored session: the engine comes online without a QR
        rt = await fh.hub.create_instance(f"shop{i}", None, [])
        ids.append(rt.id)
    await fh.advance(10)
    assert all(fh.state(i) == State.READY for i in ids)
    await fh.hub.stop()

    fh2 = build(tmp_path, store=fh.store, clock=fh.clock, restore_stagger_ms=2000, restore_concurrency=10)
    for i in ids:
        fh2.world.phone(i).linked = True
    await fh2.hub.start(restore=True)
    await fh2.advance(10)
    assert fh2.state(ids[0]) == State.READY  # the first one can send at once
    assert fh2.state(ids[-1]) == State.INITIALIZING  # spread: 2000 / 10 = 200 ms between starts
    await fh2.advance(40 * 200)  # one by one (the old restore) this took 40 x 2 s
    assert all(fh2.state(i) == State.READY for i in ids)
    await fh2.hub.stop()


async def test_zombie_session_is_degraded_until_the_next_receipt(tmp_path: Path) -> None:
    fh = build(None, degraded_after_sends=0, degraded_after_minutes=10)
    iid = await ready_instance(fh)
    async with api(fh) as c:
        queue_ids = []
        for i in range(5):
            r = await c.post(f"/instances/{iid}/client/action/send-message",
                             json={"chatId": "201000000001", "message": f"order {i}"})
            assert r.status_code in (200, 201, 202), r.text
            queue_ids.append(r.json()["queueId"])
        await fh.advance(30 * SEC)
        assert len(fh.world.phone(iid).deliveries) == 5
        assert (await status(c, iid))["degraded"] is None
        await fh.advance(12 * MIN)  # no receipt at all
        st = await status(c, iid)
        assert st["degraded"] is not None and "no server ack" in st["degraded"]["reason"]
        assert st["instance"]["state"] == "ready"
        metrics = (await c.get("/metrics")).text
        assert f'wahub_instance_degraded{{instance="{iid}"}} 1.0' in metrics
        assert len(fh.hooks.of("degraded")) == 1
        assert (await c.post("/dashboard/login", data={"api_key": API_KEY})).status_code == 303
        page = (await c.get(f"/dashboard/instances/{iid}")).text
        assert 'data-testid="degraded"' in page and "no server ack" in page
        listing = (await c.get("/dashboard")).text
        assert 'data-testid="degraded"' in listing

        last = fh.world.phone(iid).deliveries[-1]
        await fh.world.inject_ack(iid, [last.message_id], "delivered")
        await fh.advance(10)
        assert (await status(c, iid))["degraded"] is None
        assert f'wahub_instance_degraded{{instance="{iid}"}} 0.0' in (await c.get("/metrics")).text
        item = (await c.get(f"/instances/{iid}/messages/{queue_ids[-1]}")).json()["item"]
        assert item["ack"] == "delivered"
        await fh.advance(30 * MIN)
        assert len(fh.hooks.of("degraded")) == 1  # one webhook, not one per check
    await fh.hub.stop()


async def test_unreachable_whatsapp_is_last_error_and_a_failed_attempt_at_once(tmp_path: Path) -> None:
    fh = build(None, restart_backoff_ms=2000)
    await fh.hub.start(restore=False)
    fh.world.phone("shop").unreachable = "dns"
    await fh.hub.create_instance("shop", None, [])
    await fh.advance(1 * SEC)
    async with api(fh) as c:
        st = await status(c, "shop")
        assert st["instance"]["state"] == "disconnected"
        assert "unreachable (dns)" in st["lastError"]
        assert st["reconnection"]["consecutiveFailures"] == 1
        cs = (await c.get("/instances/shop/client/status")).json()["clientStatus"]
        assert "dns" in cs["lastError"]
        # the ladder keeps counting; once the network is back the next attempt links
        await fh.advance(3 * SEC)
        assert (await status(c, "shop"))["reconnection"]["consecutiveFailures"] == 2
        fh.world.phone("shop").unreachable = None
        fh.world.phone("shop").linked = True
        await fh.advance(10 * SEC)
        st = await status(c, "shop")
        assert st["instance"]["state"] == "ready" and st["lastError"] is None
    await fh.hub.stop()


async def test_pairing_code_while_not_waiting_for_a_login_is_409_at_once(tmp_path: Path) -> None:
    fh = build(None)
    await fh.hub.start(restore=False)
    fh.world.phone("shop").unreachable = "timeout"  # the engine runs, but shows no QR
    await fh.hub.create_instance("shop", None, [])
    await fh.advance(10)
    async with api(fh) as c:
        r = await c.post("/instances/shop/client/action/request-pairing-code",
                         json={"phoneNumber": "201000000001"})
        assert r.status_code == 409, r.text
        assert "restart" in r.json()["error"] and r.json()["reason"] == "not_waiting_for_login"
    await fh.hub.stop()


async def test_a_stale_login_ends_in_needs_qr_after_one_discarding_hard_restart(tmp_path: Path) -> None:
    fh = build(None, hard_restart_timeout_ms=30 * SEC, soft_restart_timeout_ms=30 * SEC, qr_window_ms=60 * SEC)
    iid = await ready_instance(fh)
    phone = fh.world.phone(iid)
    phone.stale_session = True  # the stored session no longer logs in: no QR, no ready
    await fh.hub.restart(iid, "hard")
    await fh.advance(31 * SEC)  # the attempt heard nothing: the session is discarded, a QR follows
    assert phone.linked is False
    assert fh.state(iid) == State.CONNECTING and fh.hub.instances[iid].qr is not None
    await fh.advance(61 * SEC)
    async with api(fh) as c:
        st = await status(c, iid)
    assert st["instance"]["state"] == "needs_qr"
    assert st["reconnection"]["restartsInWindow"] == 2  # the operator's and the discarding one
    await fh.hub.stop()


async def test_disable_auto_reconnect_and_cooldown(tmp_path: Path) -> None:
    fh = build(None, disable_auto_reconnect=True)
    iid = await ready_instance(fh)
    await fh.world.fault(iid, "disconnect", {})
    await fh.advance(10 * MIN)
    assert fh.state(iid) == State.DISCONNECTED
    assert await fh.store.restarts_since(iid, 0) == []
    await fh.hub.stop()

    fh = build(None, restart_backoff_ms=2000, min_disconnect_cooldown_ms=30 * SEC)
    iid = await ready_instance(fh)
    await fh.world.fault(iid, "disconnect", {})
    await fh.advance(29 * SEC)
    assert fh.state(iid) == State.DISCONNECTED
    await fh.advance(2 * SEC)
    assert fh.state(iid) == State.READY
    await fh.hub.stop()


def _hold_exclusive(path: Path) -> sqlite3.Connection:
    outside = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN EXCLUSIVE")
    return outside


@asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """Another connection holds the SQLite file's exclusive lock for the body (the hub's writes: "locked")."""
    outside = await asyncio.to_thread(_hold_exclusive, path)
    try:
        yield
    finally:
        await asyncio.to_thread(outside.rollback)
        await asyncio.to_thread(outside.close)


async def test_locked_store_holds_engine_events_and_answers_503(tmp_path: Path) -> None:
    fh = build(tmp_path, store=sqlite_store(tmp_path, busy_timeout_ms=50))
    iid = await ready_instance(fh)
    async with api(fh) as c:
        async with _locked(tmp_path / "wahub.sqlite3"):
            await fh.world.inject_message(iid, "201000000001@c.us", "arrived while locked")
            r = await c.post(f"/instances/{iid}/client/action/send-message",
                             json={"chatId": "201000000001", "message": "hello"})
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert (await c.get("/ready")).status_code == 503
            st = await status(c, iid)
            assert st["storeFault"] is not None and st["storeFault"]["reason"] == "locked"
            assert (await c.post("/dashboard/login", data={"api_key": API_KEY})).status_code == 303
            assert 'data-testid="store-fault"' in (await c.get(f"/dashboard/instances/{iid}")).text
            assert "wahub_engine_events_held 1.0" in (await c.get("/metrics")).text
        await fh.advance(1 * SEC)  # the held event is retried and stored
        events = await fh.hub.list_events(iid, limit=50)
        assert any(e.event == "message" and "arrived while locked" in e.body for e in events)
        assert (await c.get("/ready")).status_code == 200
        assert (await status(c, iid))["storeFault"] is None
    await fh.hub.stop()


async def test_the_enqueue_that_ends_a_store_fault_is_answered_after_ready_says_so(tmp_path: Path) -> None:
    fh = build(tmp_path, store=sqlite_store(tmp_path, busy_timeout_ms=50))
    iid = await ready_instance(fh)
    async with api(fh) as c:
        async with _locked(tmp_path / "wahub.sqlite3"):
            r = await c.post(f"/instances/{iid}/client/action/send-message",
                             json={"chatId": "201000000001", "message": "while locked"})
            assert r.status_code == 503
        r = await c.post(f"/instances/{iid}/client/action/send-message",
                         json={"chatId": "201000000001", "message": "after the lock"})
        assert r.status_code == 202, r.text
        assert (await c.get("/ready")).status_code == 200  # at once: no clock advanced, nothing else written
        assert (await status(c, iid))["storeFault"] is None
    await fh.hub.stop()


async def test_full_disk_is_503_not_500(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    fh = build(tmp_path, store=store)
    iid = await ready_instance(fh)
    import sqlalchemy as sa

    async with store.engine.connect() as conn:  # the file may not grow any more: SQLITE_FULL
        pages = (await conn.execute(sa.text("PRAGMA page_count"))).scalar_one()
        await conn.execute(sa.text(f"PRAGMA max_page_count = {pages}"))
    async with api(fh) as c:
        codes, r = [], None
        for i in range(200):
            r = await c.post(f"/instances/{iid}/client/action/send-message",
                             json={"chatId": "201000000001", "message": "x" * 2000 + str(i)})
            codes.append(r.status_code)
            if r.status_code != 202:
                break
        assert r is not None and codes[-1] == 503, codes[-5:]
        assert "disk full" in r.json()["error"] and int(r.headers["retry-after"]) >= 1
    await fh.hub.stop()
