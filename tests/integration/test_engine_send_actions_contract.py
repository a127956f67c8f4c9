"""The send actions as one contract for every engine (sandbox in-process, whatsmeow's real worker + fake client)."""

from __future__ import annotations

import pytest

from tests.integration.test_engine_contract import CUSTOMER, Driver, driver, ready
from wahub.engines import base

__all__ = ["driver"]  # the parametrised fixture, shared with the engine contract
pytestmark = [pytest.mark.timeout(120)]
JPEG = b"\xff\xd8\xff\xe0" + b"\x04" * 64


async def test_every_send_action_is_declared_and_goes_out_under_the_chosen_id(driver: Driver) -> None:
    engine, rec = await ready(driver)
    caps = engine.capabilities
    assert all((caps.media, caps.locations, caps.contacts, caps.reactions, caps.edits, caps.revokes, caps.forwards,
                caps.seen, caps.presence, caps.media_download))
    text_id = engine.new_message_id()
    assert text_id
    text = await engine.send_text(CUSTOMER, "Order #1001", message_id=text_id)
    mine = base.MessageRef(text_id, from_me=True)
    results = [
        await engine.send_media(CUSTOMER, base.Media("image", "image/jpeg", JPEG, caption="c"),
                                message_id=(media_id := engine.new_message_id())),
        await engine.send_location(CUSTOMER, base.Location(1.0, 2.0), message_id=(loc_id := engine.new_message_id())),
        await engine.send_vcard(CUSTOMER, "BEGIN:VCARD\nFN:A\nEND:VCARD", "A",
                                message_id=(card_id := engine.new_message_id())),
        await engine.send_reaction(CUSTOMER, mine, "👍", message_id=(react_id := engine.new_message_id())),
        await engine.send_edit(CUSTOMER, mine, "Order #1001 (2 items)",
                               message_id=(edit_id := engine.new_message_id())),
        await engine.send_forward("201000000002@c.us", "text", {"message": "Order #1001"},
                                  message_id=(fwd_id := engine.new_message_id())),
        await engine.send_revoke(CUSTOMER, mine, message_id=(revoke_id := engine.new_message_id())),
    ]
    assert [r.message_id for r in results] == [media_id, loc_id, card_id, react_id, edit_id, fwd_id, revoke_id]
    await driver.ack(engine, [driver.wire_id(results[0]), driver.wire_id(text)], "read")
    receipt = await rec.wait_for(base.Receipt, lambda r: r.ack == "read")
    assert set(receipt.message_ids) == {media_id, text_id}  # evidence for a media send names the chosen id
    await engine.send_seen(CUSTOMER)
    await engine.send_presence(CUSTOMER, "typing")
    await engine.send_presence(None, "available")
    with pytest.raises(base.MediaNotFound):
        await engine.download_media(CUSTOMER, "3A0CNOSUCHMEDIA", 1_000_000)
    await engine.stop()
