"""Every send action through a real worker process with the offline fake client (real protobufs)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.engine_events import Recorder
from wahub.engines import base
from wahub.engines.whatsmeow.engine import WhatsmeowEngine, WorkerOptions
from wahub.engines.whatsmeow.factory import WhatsmeowFactory
from wahub.runtime.clock import SystemClock

FAKE = "wahub.engines.whatsmeow.fakeclient:FakeClient"
CUSTOMER = "201000000001@c.us"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[WhatsmeowEngine]:
    fac = WhatsmeowFactory(tmp_path / "sessions", clock=SystemClock(),
                           options=WorkerOptions(fake_client=FAKE, log_level="warning"))
    rec = Recorder()
    eng = fac.create("shop", rec)
    assert isinstance(eng, WhatsmeowEngine)
    await eng.start()
    await rec.wait_for(base.QrCode)
    await eng.control(action="scan", phone="201000000099", push_name="Shop")
    await rec.wait_for(base.Ready)
    eng.recorder = rec  # type: ignore[attr-defined]
    try:
        yield eng
    finally:
        await fac.close()


async def test_media_location_vcard_go_out_as_real_messages(engine: WhatsmeowEngine) -> None:
    photo = await engine.send_media(CUSTOMER, base.Media("image", "image/jpeg", JPEG, caption="Your parcel"),
                                    message_id=engine.new_message_id())
    await engine.send_media(CUSTOMER, base.Media("ptt", "audio/ogg", b"OggS" + b"\x01" * 50))
    await engine.send_media(CUSTOMER, base.Media("document", "application/pdf", b"%PDF-1.4", filename="inv.pdf"))
    await engine.send_location(CUSTOMER, base.Location(30.0444, 31.2357, name="Pick-up", address="Tahrir"))
    await engine.send_vcard(CUSTOMER, "BEGIN:VCARD\nVERSION:3.0\nFN:Support\nEND:VCARD", "Support")
    sent = (await engine.control(action="sent"))["sent"]
    image = sent[0]["message"]["imageMessage"]
    assert image["caption"] == "Your parcel" and image["mimetype"] == "image/jpeg"
    assert int(image["fileLength"]) == len(JPEG)
    assert base64.b64decode(image["fileSHA256"]) == hashlib.sha256(JPEG).digest()  # the uploaded bytes
    assert image["mediaKey"] and image["directPath"] and image["URL"].startswith("https://")
    assert sent[1]["message"]["audioMessage"]["PTT"] is True
    assert sent[2]["message"]["documentMessage"]["fileName"] == "inv.pdf"
    assert sent[3]["message"]["locationMessage"] == {"degreesLatitude": 30.0444, "degreesLongitude": 31.2357,
                                                     "name": "Pick-up", "address": "Tahrir"}
    assert sent[4]["message"]["contactMessage"]["displayName"] == "Support"
    assert photo.message_id != sent[0]["id"]  # sent under the fake's id, reported under the chosen one
    transfer = Path(engine.session_dir) / "transfer"
    assert not any(transfer.iterdir())  # the file handed to the worker is gone


async def test_reaction_edit_revoke_forward_name_the_wire_id_of_the_target(engine: WhatsmeowEngine) -> None:
    chosen = engine.new_message_id()
    await engine.send_text(CUSTOMER, "Order #1001: 3 items", message_id=chosen)
    wire = (await engine.control(action="sent"))["sent"][0]["id"]
    mine = base.MessageRef(chosen, from_me=True)
    await engine.send_reaction(CUSTOMER, mine, "👍")
    await engine.send_edit(CUSTOMER, mine, "Order #1001: 2 items")
    await engine.send_revoke(CUSTOMER, mine)
    await engine.send_forward("201000000002@c.us", "text", {"message": "Order #1001: 3 items"})
    await engine.send_reaction(CUSTOMER, base.MessageRef("3A0C1D2E", from_me=False), "❤️")
    sent = [r["message"] for r in (await engine.control(action="sent"))["sent"][1:]]
    assert sent[0]["reactionMessage"]["key"] == {"remoteJID": "201000000001@s.whatsapp.net", "fromMe": True,
                                                 "ID": wire}
    assert sent[0]["reactionMessage"]["text"] == "👍"
    edit = sent[1]["editedMessage"]["message"]["protocolMessage"]
    assert edit["type"] == "MESSAGE_EDIT" and edit["key"]["ID"] == wire
    assert edit["editedMessage"] == {"conversation": "Order #1001: 2 items"}
    assert sent[2]["protocolMessage"]["type"] == "REVOKE" and sent[2]["protocolMessage"]["key"]["ID"] == wire
    forwarded = sent[3]["extendedTextMessage"]
    assert forwarded["text"] == "Order #1001: 3 items" and forwarded["contextInfo"]["isForwarded"] is True
    assert sent[4]["reactionMessage"]["key"] == {"remoteJID": "201000000001@s.whatsapp.net", "fromMe": False,
                                                 "ID": "3A0C1D2E"}


async def test_seen_presence_and_download_of_received_media(engine: WhatsmeowEngine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    await engine.send_presence(CUSTOMER, "typing")
    await engine.send_presence(None, "available")
    await engine.send_seen(CUSTOMER, ["3A0C1D2E"])
    presence = (await engine.control(action="presence"))["presence"]
    assert any(p.startswith("201000000001@s.whatsapp.net:") for p in presence)
    assert "read:201000000001@s.whatsapp.net:3A0C1D2E" in presence
    injected = await engine.control(action="raw_message", sender="201000000001@s.whatsapp.net",
                                    media_b64=base64.b64encode(JPEG).decode(),
                                    message={"imageMessage": {"mimetype": "image/jpeg", "caption": "parcel",
                                                              "directPath": "/v/t62/in-1", "fileLength": len(JPEG)}})
    await rec.wait_for(base.InboundMessage)
    got = await engine.download_media(CUSTOMER, injected["id"], 1_000_000)
    assert got.data == JPEG and got.mimetype == "image/jpeg"
    with pytest.raises(base.MediaTooLarge):
        await engine.download_media(CUSTOMER, injected["id"], 100)
    with pytest.raises(base.MediaNotFound):
        await engine.download_media(CUSTOMER, "3A0CUNKNOWN", 1_000_000)


async def test_a_media_forward_uploads_the_file_again_marked_forwarded(engine: WhatsmeowEngine) -> None:
    content = {"mediaType": "document", "mimetype": "application/pdf", "filename": "inv.pdf",
               "data": base64.b64encode(b"%PDF-1.4 forward").decode(), "size": 16}
    await engine.send_forward("201000000002@c.us", "media", content)
    await engine.send_forward("201000000002@c.us", "location", {"latitude": 1.0, "longitude": 2.0})
    sent = (await engine.control(action="sent"))["sent"]
    doc = sent[0]["message"]["documentMessage"]
    assert doc["fileName"] == "inv.pdf" and doc["contextInfo"]["isForwarded"] is True
    assert base64.b64decode(doc["fileSHA256"]) == hashlib.sha256(b"%PDF-1.4 forward").digest()
    assert sent[1]["message"]["locationMessage"]["contextInfo"]["isForwarded"] is True


async def test_a_start_removes_media_files_a_crash_left_behind(tmp_path: Path) -> None:
    fac = WhatsmeowFactory(tmp_path / "sessions", clock=SystemClock(),
                           options=WorkerOptions(fake_client=FAKE, log_level="warning"))
    left = tmp_path / "sessions" / "shop" / "transfer" / "leftover.bin"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"a customer's photo")
    rec = Recorder()
    eng = fac.create("shop", rec)
    try:
        await eng.start()
        await rec.wait_for(base.QrCode)
        assert not left.exists()
    finally:
        await fac.close()


async def test_send_seen_marks_the_chats_received_messages_read(engine: WhatsmeowEngine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    first = await engine.control(action="raw_message", sender="201000000001@s.whatsapp.net",
                                 message={"conversation": "is my order ready?"})
    second = await engine.control(action="raw_message", sender="201000000001@s.whatsapp.net",
                                  message={"conversation": "hello?"})
    await rec.wait_for(base.InboundMessage, lambda m: m.message_id == second["id"])
    await engine.send_seen(CUSTOMER)
    await engine.send_seen(CUSTOMER)  # nothing left unread: no second receipt
    reads = [p for p in (await engine.control(action="presence"))["presence"] if p.startswith("read:")]
    assert reads == [f"read:201000000001@s.whatsapp.net:{first['id']},{second['id']}"]
