"""The real worker subprocess (neonize imported) driven by the hub-side engine, with the fake client.

Nothing here reaches WhatsApp: the worker runs ``FakeClient`` behind the same calls as neonize's
``NewClient``; events are real neonize protobufs that go through the real adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.engine_events import Recorder
from wahub.domain.errors import DisconnectedError, EngineError, PermanentSendError, TransientSendError
from wahub.engines import base
from wahub.engines.whatsmeow.engine import WhatsmeowEngine, WorkerOptions
from wahub.engines.whatsmeow.factory import WhatsmeowFactory
from wahub.engines.whatsmeow.worker import EXIT_QR_TIMEOUT
from wahub.runtime.clock import SystemClock

Linked = tuple[WhatsmeowEngine, Recorder, WhatsmeowFactory]
FAKE = "wahub.engines.whatsmeow.fakeclient:FakeClient"
CUSTOMER = "201000000001@c.us"

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def factory(tmp_path: Path, **options: object) -> WhatsmeowFactory:
    opts = WorkerOptions(fake_client=FAKE, log_level="warning", **options)  # type: ignore[arg-type]
    return WhatsmeowFactory(tmp_path / "sessions", clock=SystemClock(), options=opts)


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[Linked]:
    """A started engine whose worker was linked by "scanning" the QR."""
    fac = factory(tmp_path)
    rec = Recorder()
    engine = fac.create("shop", rec)
    await engine.start()
    await rec.wait_for(base.QrCode)
    await engine.control(action="scan", phone="201000000099", push_name="Shop")
    await rec.wait_for(base.Ready)
    try:
        yield engine, rec, fac
    finally:
        await fac.close()


async def test_qr_then_scan_then_ready(linked: Linked) -> None:
    engine, rec, _ = linked
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds[:3] == ["QrCode", "Authenticated", "Ready"]
    assert rec.of(base.QrCode)[0].code.startswith("2@")
    assert rec.of(base.Ready)[0] == base.Ready(phone="201000000099", push_name="Shop",
                                               jid="201000000099@c.us")
    assert engine.client_kind == f"fake:{FAKE}"
    assert await engine.probe_ready()


async def test_send_text_verbatim_and_poll(linked: Linked) -> None:
    engine, _, _ = linked
    text = "Order #1001: confirm? @201000000001 ✓"
    sent = await engine.send_text(CUSTOMER, text)
    poll = await engine.send_poll(CUSTOMER, "Confirm order #1001?", ["Yes", "No"], multiple=False)
    assert sent.message_id != poll.message_id and sent.timestamp > 0
    records = (await engine.control(action="sent"))["sent"]
    assert records[0] == {"id": sent.message_id, "to": "201000000001@s.whatsapp.net",
                          "message": {"conversation": text}}
    created = records[1]["message"]["pollCreationMessage"]
    assert created == {"name": "Confirm order #1001?", "selectableOptionsCount": 1,
                       "options": [{"optionName": "Yes"}, {"optionName": "No"}]}
    assert records[1]["message"]["messageContextInfo"]["messageSecret"]


async def test_vote_inbound_and_receipts(linked: Linked) -> None:
    engine, rec, _ = linked
    poll = await engine.send_poll(CUSTOMER, "Confirm?", ["Yes", "No"], multiple=True)
    text = await engine.send_text(CUSTOMER, "hello")
    await engine.control(action="vote", poll_id=poll.message_id, voter="99887766554433@lid",
                         voter_alt="201000000001@s.whatsapp.net", chat="201000000001@s.whatsapp.net",
                         options=["No"])
    vote = await rec.wait_for(base.PollVote)
    assert vote.poll_message_id == poll.message_id
    assert vote.selected_hashes == (hashlib.sha256(b"No").hexdigest(),)
    assert (vote.voter, vote.voter_alt, vote.chat_id) == ("99887766554433@lid", CUSTOMER, CUSTOMER)
    await engine.control(action="receipt", chat="201000000001@s.whatsapp.net",
                         ids=[poll.message_id, text.message_id], ack="read")
    receipt = await rec.wait_for(base.Receipt)
    assert receipt.message_ids == (poll.message_id, text.message_id) and receipt.ack == "read"
    await engine.control(action="message", sender="99887766554433@lid", text="yes please",
                         sender_alt="201000000001@s.whatsapp.net", id="3EB0INBOUND")
    inbound = await rec.wait_for(base.InboundMessage)
    assert (inbound.message_id, inbound.text, inbound.sender_alt) == ("3EB0INBOUND", "yes please", CUSTOMER)


async def test_send_errors_are_classified(linked: Linked) -> None:
    engine, _, _ = linked
    await engine.control(action="unregistered", number="201000000002")
    with pytest.raises(PermanentSendError) as not_on:
        await engine.send_text("201000000002@c.us", "hi")
    assert not_on.value.reason == "not_on_whatsapp"
    assert await engine.is_registered("201000000002@c.us") is False
    assert await engine.is_registered(CUSTOMER) is True
    await engine.control(action="send_error", message="server returned error 500")
    with pytest.raises(TransientSendError):
        await engine.send_text(CUSTOMER, "hi")
    await engine.control(action="send_error", message="websocket not connected")
    with pytest.raises(DisconnectedError):
        await engine.send_text(CUSTOMER, "hi")
    await engine.send_typing(CUSTOMER)
    presence = (await engine.control(action="presence"))["presence"]
    assert any(p.startswith("201000000001@s.whatsapp.net:") for p in presence)


async def test_connection_events_from_the_phone(linked: Linked) -> None:
    engine, rec, _ = linked
    await engine.control(action="disconnect")
    assert await rec.wait_for(base.Disconnected) == base.Disconnected("disconnected")
    await engine.control(action="temporary_ban", expire_s=600)
    ban = await rec.wait_for(base.TemporaryBan)
    assert ban.code == "send_to_too_many_people" and ban.expires_at is not None
    await engine.control(action="stream_replaced")
    assert await rec.wait_for(base.LoggedOut) == base.LoggedOut("stream_replaced")


async def test_soft_restart_reconnects_inside_the_same_worker(
        linked: Linked) -> None:
    engine, rec, _ = linked
    pid = engine.pid
    mark = len(rec.events)
    await engine.reconnect()
    await rec.wait_for(base.Ready, after=mark)
    assert engine.pid == pid
    assert (await engine.send_text(CUSTOMER, "after reconnect")).message_id


async def test_sigkill_is_a_disconnect_and_hard_restart_respawns(
        linked: Linked) -> None:
    engine, rec, fac = linked
    old_pid = engine.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    assert await rec.wait_for(base.Disconnected) == base.Disconnected("worker_exit")
    assert not engine.running
    with pytest.raises(DisconnectedError):
        await engine.send_text(CUSTOMER, "while dead")
    # hard restart = stop + a fresh engine: the linked session survives, no new QR
    await engine.stop()
    rec2 = Recorder()
    fresh = fac.create("shop", rec2)
    await fresh.start()
    ready = await rec2.wait_for(base.Ready)
    assert ready.phone == "201000000099" and fresh.pid != old_pid
    assert not rec2.of(base.QrCode)
    assert (await fresh.send_text(CUSTOMER, "back")).message_id


async def test_stop_is_not_a_disconnect(linked: Linked) -> None:
    engine, rec, _ = linked
    pid = engine.pid
    await engine.stop()
    assert not engine.running and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not rec.of(base.Disconnected)


async def test_logout_removes_the_session(linked: Linked) -> None:
    engine, _, fac = linked
    session = fac.session_dir("shop")
    assert (session / "fake-session.json").exists()
    await engine.logout()
    assert not session.exists() and not engine.running
    # an engine that never started can log out too (instance deleted while stopped)
    session.mkdir(parents=True)
    (session / "whatsmeow.sqlite3").write_bytes(b"x")
    await fac.create("shop", Recorder()).logout()
    assert not session.exists()


async def test_qr_window_end_reports_timeout_and_the_worker_exits(tmp_path: Path) -> None:
    fac = factory(tmp_path, qr_window_ms=600)
    rec = Recorder()
    engine = fac.create("lonely", rec)
    await engine.start()
    await rec.wait_for(base.QrCode)
    await rec.wait_for(base.QrTimeout)
    proc = engine._proc
    assert proc is not None
    assert await asyncio.wait_for(proc.wait(), 20) == EXIT_QR_TIMEOUT
    await asyncio.wait_for(engine._reader, 20)  # type: ignore[arg-type]
    assert not rec.of(base.Disconnected)  # the exit was announced: not a crash
    assert not engine.running
    with pytest.raises(EngineError):
        await engine.is_registered(CUSTOMER)
    await fac.close()


async def test_pairing_code_while_waiting_for_login(tmp_path: Path) -> None:
    fac = factory(tmp_path)
    rec = Recorder()
    engine = fac.create("bycode", rec)
    await engine.start()
    code = await engine.request_pairing_code("201000000099")
    assert len(code) == 9 and code[4] == "-"
    assert (await rec.wait_for(base.PairCode)).code == code
    await fac.close()


async def test_whatsapp_unreachable_is_a_connect_failure_with_its_reason(tmp_path: Path) -> None:
    dial = ('failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send handshake request: '
            'Get "https://web.whatsapp.com/ws/chat": dial tcp: lookup web.whatsapp.com: no such host')
    fac = factory(tmp_path, env={"WAHUB_FAKE_CONNECT_ERROR": dial})
    rec = Recorder()
    engine = fac.create("offline", rec)
    await engine.start()
    failed = await rec.wait_for(base.ConnectFailed)
    assert failed == base.ConnectFailed(reason="dns", detail=dial)
    assert not rec.of(base.Disconnected) and not rec.of(base.QrCode)
    await fac.close()


async def test_pairing_code_on_a_linked_worker_is_refused_at_once(linked: Linked) -> None:
    engine, _, _ = linked
    with pytest.raises(base.EngineStateConflict) as refused:
        await engine.request_pairing_code("201000000099")
    assert refused.value.reason == "already_linked"


async def test_undecryptable_vote_still_reports_the_poll_and_voter(linked: Linked) -> None:
    engine, rec, _ = linked
    poll = await engine.send_poll(CUSTOMER, "Confirm?", ["Yes", "No"], multiple=False)
    await engine.control(action="undecryptable_vote", poll_id=poll.message_id, voter="201000000001@s.whatsapp.net")
    vote = await rec.wait_for(base.PollVote)
    assert (vote.poll_message_id, vote.voter, vote.decrypt_failed) == (poll.message_id, CUSTOMER, True)
    assert vote.selected_hashes is None and vote.selected_options is None


async def test_pairing_code_while_a_stale_session_connects_is_refused_at_once(tmp_path: Path) -> None:
    """A stored login that never becomes ready shows no QR: a pairing code cannot be issued, say so now."""
    fac = factory(tmp_path, env={"WAHUB_FAKE_STALE_SESSION": "1"})
    session = fac.session_dir("stale")
    session.mkdir(parents=True)
    (session / "fake-session.json").write_text('{"phone": "201000000099", "push_name": "Old"}')
    rec = Recorder()
    engine = fac.create("stale", rec)
    await engine.start()
    with pytest.raises(base.EngineStateConflict) as refused:
        await engine.request_pairing_code("201000000099")
    assert refused.value.reason == "not_waiting_for_login" and "discard" in str(refused.value)
    await engine.discard_session()  # what the supervisor does for a stale login: next start shows a QR
    assert not session.exists()
    fresh_rec = Recorder()
    fresh = fac.create("stale", fresh_rec)
    await fresh.start()
    await fresh_rec.wait_for(base.QrCode)
    assert (await fresh.request_pairing_code("201000000099"))[4] == "-"
    await fac.close()
