"""Inbound kinds on the whatsmeow engine end to end: real protobufs through the offline fake client, the
worker subprocess and the hub, to the webhook receiver with the documented fields.

Report: on the whatsmeow engine, media, contacts, locations, reactions, edits and deletes gave no
webhook and no log line; a vote that failed to decrypt was dropped with a traceback.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from tests.integration.test_whatsmeow_hub import engine_of, hub, until
from tests.support import neonize_fixtures as fx
from tests.support.receiver import Receiver
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.runtime.hub import Hub

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
__all__ = ["hub"]  # the fixture: a whole hub on the whatsmeow engine with the fake client

PHONE = "201000000001"
LID = "99887766554433"


async def test_media_reactions_edits_revokes_and_an_undecryptable_vote_become_webhooks(hub: Hub) -> None:
    with Receiver() as rx:
        rt = await hub.create_instance("shop.myshopify.com", rx.url, None)
        await until(lambda: rt.qr is not None and rt.state == State.CONNECTING)
        engine = engine_of(hub, rt.id)
        await engine.control(action="scan", phone="201000000099")
        await until(lambda: rt.state == State.READY)

        async def raw(ev: Any, sender: str = f"{PHONE}@s.whatsapp.net", **extra: Any) -> None:
            await engine.control(action="raw_message", sender=sender, id=ev.Info.ID,
                                 message=dict(json_format.MessageToDict(ev.Message)), **extra)

        for ev in (fx.image_ev, fx.ptt_ev, fx.document_ev, fx.vcard_ev, fx.location_ev, fx.reply_ev):
            await raw(ev)
        await engine.control(action="message", sender=f"{LID}@lid", sender_alt=f"{PHONE}@s.whatsapp.net",
                             text="hello from my lid", id="3EB0LID1")
        await raw(fx.reaction_ev, sender=f"{LID}@lid")  # the lid alone: the phone is remembered
        await raw(fx.edit_ev)
        await raw(fx.revoke_ev)

        poll = await hub.outbox.enqueue(rt.id, ItemKind.POLL, {"chatId": f"{PHONE}@c.us", "caption": "Confirm #1?",
                                                               "options": ["Yes", "No"], "multipleAnswers": False},
                                        header_key="order:1:poll")

        async def poll_sent() -> str | None:
            item = await hub.outbox.get_item(rt.id, poll.item.queue_id)
            return item.message_id if item.status == ItemStatus.SENT else None

        poll_id = await until(poll_sent)
        await engine.control(action="undecryptable_vote", poll_id=poll_id, voter=f"{PHONE}@s.whatsapp.net")

        def wanted(reqs: list[Any]) -> bool:
            return sum(r.json["event"] in ("message", "message_reaction", "message_edit", "message_revoke",
                                           "vote_update") for r in reqs) >= 11

        await until(lambda: wanted(rx.snapshot()))
        bodies = [r.json for r in rx.snapshot()]
        messages = {b["data"]["message"]["id"]: b["data"]["message"] for b in bodies if b["event"] == "message"}
        assert {mid: m["type"] for mid, m in messages.items()} == {
            "3EB0IMG": "image", "3EB0PTT": "ptt", "3EB0DOC": "document", "3EB0VCF": "vcard", "3EB0LOC": "location",
            "3EB0REPLY": "chat", "3EB0LID1": "chat"}
        image = messages["3EB0IMG"]
        assert (image["hasMedia"], image["mimetype"], image["caption"], image["from"]) == (
            True, "image/jpeg", "parcel arrived broken", PHONE)
        assert messages["3EB0DOC"]["filename"] == "invoice-1001.pdf"
        assert messages["3EB0VCF"]["vCards"] == [fx.VCARD]
        assert messages["3EB0LOC"]["location"] == {"latitude": 30.0444, "longitude": 31.2357,
                                                   "name": "Tahrir Square", "address": "Cairo, Egypt"}
        assert (messages["3EB0REPLY"]["quotedMsgId"], messages["3EB0REPLY"]["quotedMsgBody"]) == (
            "3EB0POLL", "Order #1001: confirm?")
        assert messages["3EB0LID1"]["fromAlt"] == f"{PHONE}@c.us"

        [reaction] = [b["data"]["reaction"] for b in bodies if b["event"] == "message_reaction"]
        assert (reaction["msgId"], reaction["reaction"], reaction["fromAlt"]) == ("3EB0ORDER", "👍", f"{PHONE}@c.us")
        [edit] = [b["data"] for b in bodies if b["event"] == "message_edit"]
        assert (edit["originalMessageId"], edit["newBody"]) == ("3EB0ORIG", "actually CANCEL my order")
        [revoke] = [b["data"] for b in bodies if b["event"] == "message_revoke"]
        assert revoke["originalMessageId"] == "3EB0ORIG"
        [vote] = [b["data"] for b in bodies if b["event"] == "vote_update"]
        assert vote["decryptFailed"] is True and vote["vote"]["selectedOptions"] is None
        assert (vote["vote"]["pollMessageId"], vote["idempotencyKey"], vote["chatId"]) == (
            poll_id, "order:1:poll", f"{PHONE}@c.us")
        assert vote["voterLid"] == f"{LID}@lid"  # the phone voter's remembered hidden-number id
        _, latest = await hub.poll_votes(rt.id, poll_id)
        assert latest == []
