"""Caller-chosen ids and "may have been sent" through the real worker subprocess (fake client, no network).

A send whose answer is lost after the message reached the chat must come back ``maybe_sent`` (never a
plain retryable error), and the evidence that follows — a receipt for the id the message went out
under — must reach the hub under the id the hub chose before the call.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.integration import test_whatsmeow_worker as worker_tests
from tests.integration.test_whatsmeow_worker import CUSTOMER, Linked
from tests.support.engine_events import Recorder
from wahub.domain.errors import DisconnectedError, TransientSendError
from wahub.engines import base
from wahub.engines.whatsmeow import msgids

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
linked = worker_tests.linked  # the fixture: a started engine whose worker was linked


def test_new_ids_have_whatsmeows_shape() -> None:
    ids = {msgids.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 22 and i.startswith("3EB0") and i == i.upper() and int(i, 16) for i in ids)


async def test_deliver_then_timeout_is_maybe_sent_and_the_receipt_names_the_chosen_id(linked: Linked) -> None:
    engine, rec, _ = linked
    assert engine.capabilities.chosen_message_ids
    chosen = engine.new_message_id()
    assert chosen is not None
    await engine.control(action="deliver_then_timeout")
    await engine.control(action="receipt_after_send", ack="delivered", delay_ms=300)
    with pytest.raises(TransientSendError) as lost:
        await engine.send_text(CUSTOMER, "Order #1001 confirmed", message_id=chosen)
    assert lost.value.maybe_sent and lost.value.reason == "timeout"
    sent = (await engine.control(action="sent"))["sent"]
    assert [s["message"] for s in sent] == [{"conversation": "Order #1001 confirmed"}]  # exactly one delivery
    receipt = await rec.wait_for(base.Receipt)
    assert receipt.message_ids == (chosen,) and receipt.ack == "delivered"


async def test_unknown_and_connection_lost_errors_after_the_write_are_maybe_sent(linked: Linked) -> None:
    engine, _, _ = linked
    await engine.control(action="send_error", message="websocket disconnected before message send returned",
                         delivered=True)
    with pytest.raises(DisconnectedError) as lost:
        await engine.send_text(CUSTOMER, "a", message_id=engine.new_message_id())
    assert lost.value.maybe_sent
    await engine.control(action="send_error", message="something nobody has seen", delivered=True)
    with pytest.raises(TransientSendError) as unknown:
        await engine.send_text(CUSTOMER, "b", message_id=engine.new_message_id())
    assert unknown.value.maybe_sent
    # refused before anything was written: a plain re-queue, not uncertain
    await engine.control(action="send_error", message="websocket not connected")
    with pytest.raises(DisconnectedError) as refused:
        await engine.send_text(CUSTOMER, "c", message_id=engine.new_message_id())
    assert not refused.value.maybe_sent


async def test_sends_votes_and_receipts_use_the_chosen_id_across_a_worker_restart(linked: Linked) -> None:
    engine, rec, fac = linked
    text_id, poll_id = engine.new_message_id(), engine.new_message_id()
    assert text_id and poll_id and text_id != poll_id
    text = await engine.send_text(CUSTOMER, "hello", message_id=text_id)
    poll = await engine.send_poll(CUSTOMER, "Confirm?", ["Yes", "No"], multiple=False, message_id=poll_id)
    assert (text.message_id, poll.message_id) == (text_id, poll_id)
    wire_ids = [s["id"] for s in (await engine.control(action="sent"))["sent"]]
    assert wire_ids == [text.extra["wire_id"], poll.extra["wire_id"]] and text_id not in wire_ids
    # a fresh worker (hard restart) still knows which wire id stands for which chosen id
    await engine.stop()
    rec2 = Recorder()
    fresh = fac.create("shop", rec2)
    await fresh.start()
    await rec2.wait_for(base.Ready)
    await fresh.control(action="receipt", chat="201000000001@s.whatsapp.net", ids=wire_ids, ack="read")
    assert (await rec2.wait_for(base.Receipt)).message_ids == (text_id, poll_id)
    await fresh.control(action="vote", poll_id=wire_ids[1], voter="201000000001@s.whatsapp.net", options=["Yes"])
    vote = await rec2.wait_for(base.PollVote)
    assert vote.poll_message_id == poll_id and vote.selected_hashes == (hashlib.sha256(b"Yes").hexdigest(),)
    await fresh.control(action="raw_message", sender="201000000001@s.whatsapp.net", message={
        "extendedTextMessage": {"text": "Yes!", "contextInfo": {"stanzaID": wire_ids[1]}}})
    reply = await rec2.wait_for(base.InboundMessage)
    assert reply.quoted_message_id == poll_id
    assert not rec.of(base.Receipt)
