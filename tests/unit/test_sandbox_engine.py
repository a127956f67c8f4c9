"""Sandbox behaviour the runtime relies on, on a fake clock: lost answers with and without evidence,
chosen ids, and inbound traffic of every kind injected through the Python API."""

from __future__ import annotations

import pytest

from tests.support.engine_events import Recorder
from wahub.domain.errors import InvalidInput, TransientSendError
from wahub.engines import base
from wahub.engines.sandbox import SandboxFactory, SandboxWorld
from wahub.runtime.clock import FakeClock

pytestmark = [pytest.mark.timeout(30)]

IID = "shop"
CUSTOMER = "201000000001@c.us"


async def ready_engine(auto_ack: bool = False) -> tuple[SandboxWorld, base.Engine, Recorder, FakeClock]:
    clock = FakeClock()
    world = SandboxWorld(clock, None, auto_ack=auto_ack)
    rec = Recorder()
    engine = SandboxFactory(world).create(IID, rec)
    await engine.start()
    await clock.advance(10)
    await world.scan(IID, phone="201000000099")
    await clock.advance(1_000)
    assert rec.of(base.Ready)
    return world, engine, rec, clock


@pytest.mark.parametrize("auto_ack", [False, True])
async def test_answer_lost_delivers_once_then_the_receipt_for_that_id_arrives(auto_ack: bool) -> None:
    world, engine, rec, clock = await ready_engine(auto_ack)
    await world.fault(IID, "send_error", {"mode": "answer_lost", "evidence_delay_ms": 5_000})
    chosen = engine.new_message_id()
    assert chosen and engine.capabilities.chosen_message_ids
    with pytest.raises(TransientSendError) as lost:
        await engine.send_text(CUSTOMER, "Order #1001 confirmed", message_id=chosen)
    assert lost.value.maybe_sent
    assert [(d.message_id, d.text) for d in world.phone(IID).deliveries] == [(chosen, "Order #1001 confirmed")]
    await clock.advance(4_000)
    assert not rec.of(base.Receipt)
    await clock.advance(1_000)
    assert [(r.message_ids, r.ack) for r in rec.of(base.Receipt)] == [((chosen,), "delivered")]


async def test_answer_lost_silent_never_gives_evidence() -> None:
    world, engine, rec, clock = await ready_engine(auto_ack=True)
    await world.fault(IID, "send_error", {"mode": "answer_lost_silent"})
    chosen = engine.new_message_id()
    with pytest.raises(TransientSendError) as lost:
        await engine.send_text(CUSTOMER, "hello", message_id=chosen)
    assert lost.value.maybe_sent
    assert [d.message_id for d in world.phone(IID).deliveries] == [chosen]
    await clock.advance(3_600_000)
    assert not rec.of(base.Receipt)
    after = await engine.send_text(CUSTOMER, "next")  # the next send is normal again, and acked
    await clock.advance(100)
    assert [r.message_ids for r in rec.of(base.Receipt)] == [(after.message_id,)]


async def test_unknown_send_error_mode_names_the_choices() -> None:
    world, _, _, _ = await ready_engine()
    with pytest.raises(InvalidInput, match="answer_lost_silent"):
        await world.fault(IID, "send_error", {"mode": "answer_lost_loud"})


async def test_inbound_kinds_reactions_edits_revokes_and_undecryptable_votes() -> None:
    world, engine, rec, _ = await ready_engine()
    await world.inject_message(IID, CUSTOMER, "parcel arrived broken", kind="image", mimetype="image/jpeg",
                               caption="parcel arrived broken")
    await world.inject_message(IID, CUSTOMER, "", kind="ptt", mimetype="audio/ogg; codecs=opus")
    await world.inject_message(IID, CUSTOMER, "", kind="location", latitude=30.0444, longitude=31.2357,
                               location_name="Tahrir Square")
    await world.inject_message(IID, CUSTOMER, "BEGIN:VCARD…", kind="vcard", vcards=["BEGIN:VCARD…"])
    poll = await engine.send_poll(CUSTOMER, "Confirm?", ["Yes", "No"], False)
    reply = await world.inject_message(IID, CUSTOMER, "Confirm", quoted_message_id=poll.message_id,
                                       quoted_body="Confirm?")
    await world.inject_reaction(IID, CUSTOMER, poll.message_id, "👍")
    await world.inject_edit(IID, CUSTOMER, reply, "actually CANCEL my order")
    await world.inject_revoke(IID, CUSTOMER, reply)
    await world.inject_vote(IID, poll.message_id, CUSTOMER, [], decrypt_failed=True)
    messages = rec.of(base.InboundMessage)
    assert [(m.kind, m.has_media) for m in messages] == [("image", True), ("ptt", True), ("location", False),
                                                         ("vcard", False), ("chat", False)]
    assert messages[0].caption == "parcel arrived broken" and messages[2].location_name == "Tahrir Square"
    assert messages[3].vcards == ("BEGIN:VCARD…",)
    assert (messages[4].quoted_message_id, messages[4].quoted_body) == (poll.message_id, "Confirm?")
    [reaction] = rec.of(base.Reaction)
    assert (reaction.target_message_id, reaction.emoji, reaction.sender) == (poll.message_id, "👍", CUSTOMER)
    [edit] = rec.of(base.MessageEdit)
    assert (edit.original_message_id, edit.text) == (reply, "actually CANCEL my order")
    assert rec.of(base.MessageRevoke)[0].original_message_id == reply
    [vote] = rec.of(base.PollVote)
    assert vote.decrypt_failed and vote.poll_message_id == poll.message_id and vote.selected_options is None
