"""Every inbound kind, as a real neonize protobuf, through the fake client, the worker and the protocol."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from tests.integration import test_whatsmeow_worker as worker_tests
from tests.integration.test_whatsmeow_worker import CUSTOMER, Linked
from tests.support import neonize_fixtures as fx
from wahub.engines import base

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
linked = worker_tests.linked  # the fixture: a started engine whose worker was linked
SENDER = "201000000001@s.whatsapp.net"


def as_json(ev: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(ev.Message))


async def test_media_contacts_locations_reactions_edits_and_revokes_reach_the_hub(linked: Linked) -> None:
    engine, rec, _ = linked
    for ev in (fx.image_ev, fx.ptt_ev, fx.video_ev, fx.document_ev, fx.sticker_ev, fx.vcard_ev, fx.location_ev,
               fx.reply_ev, fx.reaction_ev, fx.edit_ev, fx.revoke_ev):
        await engine.control(action="raw_message", sender=SENDER, message=as_json(ev), id=ev.Info.ID)
    await rec.wait_for(base.MessageRevoke)
    inbound = {m.message_id: m for m in rec.of(base.InboundMessage)}
    assert [m.kind for m in inbound.values()] == ["image", "ptt", "video", "document", "sticker", "vcard",
                                                  "location", "chat"]
    image = inbound["3EB0IMG"]
    assert (image.sender, image.caption, image.mimetype, image.has_media) == (
        CUSTOMER, "parcel arrived broken", "image/jpeg", True)
    assert inbound["3EB0DOC"].filename == "invoice-1001.pdf"
    assert inbound["3EB0VCF"].vcards == (fx.VCARD,)
    loc = inbound["3EB0LOC"]
    assert (loc.latitude, loc.longitude, loc.location_name) == (30.0444, 31.2357, "Tahrir Square")
    reply = inbound["3EB0REPLY"]
    assert (reply.quoted_message_id, reply.quoted_body) == ("3EB0POLL", "Order #1001: confirm?")
    [reaction] = rec.of(base.Reaction)
    assert (reaction.target_message_id, reaction.emoji, reaction.sender) == ("3EB0ORDER", "👍", CUSTOMER)
    [edit] = rec.of(base.MessageEdit)
    assert (edit.original_message_id, edit.text) == ("3EB0ORIG", "actually CANCEL my order")
    [revoke] = rec.of(base.MessageRevoke)
    assert revoke.original_message_id == "3EB0ORIG" and revoke.chat_id == CUSTOMER
