"""Each send action end to end through the HTTP API on the sandbox: enqueued, paced, delivered once.

Asserted on the sandbox's deliveries (what "WhatsApp" received) and on the public answers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.fakehub import HOOK_URL, FakeHub, build
from tests.support.server import API_KEY
from wahub.web.app import create_app

SEC = 1000
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100
OGG = b"OggS" + b"\x00" * 60
A = "/instances/{id}/client/action/"


@dataclass
class Api:
    fh: FakeHub
    client: httpx.AsyncClient
    iid: str

    async def post(self, action: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return await self.client.post(A.format(id=self.iid) + action, json=body, **kw)

    def deliveries(self) -> list[dict[str, Any]]:
        return [d.as_dict() for d in self.fh.world.phones[self.iid].deliveries]


def _served(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/parcel.jpg":
        return httpx.Response(200, content=JPEG, headers={"content-type": "image/jpeg"})
    if request.url.path == "/stamped.jpg":  # a CDN that stamps every copy: other bytes on each fetch
        _served.copies += 1  # type: ignore[attr-defined]
        return httpx.Response(200, content=JPEG + str(_served.copies).encode(),  # type: ignore[attr-defined]
                              headers={"content-type": "image/jpeg"})
    if request.url.path == "/big.bin":
        return httpx.Response(200, content=b"\x00" * 5000, headers={"content-type": "application/pdf"})
    if request.url.path == "/fake.jpg":
        return httpx.Response(200, content=b"<html>not an image</html>", headers={"content-type": "image/jpeg"})
    return httpx.Response(404)


_served.copies = 0  # type: ignore[attr-defined]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    fh = build(None, media_max_bytes=4096, send_interval_ms=1000, max_sends_per_minute=30)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("actions", HOOK_URL, [])
    await fh.link(rt.id)
    fh.hub.send_actions.media.transport = httpx.MockTransport(_served)
    app = create_app(fh.hub, manage_hub=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        yield Api(fh, client, rt.id)
    await fh.hub.stop()


async def _sent_id(api: Api, r: httpx.Response) -> str:
    assert r.status_code == 202, r.text
    await api.fh.advance(5 * SEC)
    item = (await api.client.get(f"/instances/{api.iid}/messages/{r.json()['queueId']}")).json()
    assert item["item"]["status"] == "sent", item
    return str(item["item"]["messageId"])


async def test_media_from_url_and_base64_voice_and_document_reach_the_chat(api: Api) -> None:
    r = await api.post("send-media", {"chatId": "201000000001", "mediaUrl": "http://127.0.0.1:9/parcel.jpg",
                                      "mediaCaption": "Your parcel"})
    photo = await _sent_id(api, r)
    r = await api.post("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(OGG).decode(),
                                      "asVoice": True})
    await _sent_id(api, r)
    r = await api.post("send-media", {"chatId": "201000000001", "asDocument": True, "mediaName": "invoice.pdf",
                                      "mediaBase64": base64.b64encode(b"%PDF-1.4 x").decode()})
    await _sent_id(api, r)
    d = api.deliveries()
    assert [(x["kind"], x["mediaType"], x["mimetype"]) for x in d] == [
        ("media", "image", "image/jpeg"), ("media", "ptt", "audio/ogg"), ("media", "document", "application/pdf")]
    assert d[0]["messageId"] == photo and d[0]["caption"] == "Your parcel" and d[0]["size"] == len(JPEG)
    assert d[2]["filename"] == "invoice.pdf"
    listed = (await api.client.get(f"/instances/{api.iid}/outbox")).text
    assert base64.b64encode(JPEG).decode()[:40] not in listed  # the file never comes back in listings


async def test_location_vcard_reaction_edit_delete_and_forward(api: Api) -> None:
    r = await api.post("send-location", {"chatId": "201000000001", "latitude": 30.0444, "longitude": 31.2357,
                                         "options": {"name": "Pick-up", "address": "Tahrir Square"}})
    await _sent_id(api, r)
    r = await api.post("send-vcard", {"chatId": "201000000001",
                                      "vCard": {"fullName": "Shop support", "phoneNumber": "+20 100 000 0009"}})
    await _sent_id(api, r)
    r = await api.client.post(A.format(id=api.iid) + "send-message",
                              json={"chatId": "201000000001", "message": "Order #1001: 3 items"})
    text_id = await _sent_id(api, r)
    r = await api.post("react-to-message", {"messageId": text_id, "reaction": "👍"})
    await _sent_id(api, r)
    r = await api.post("edit-message", {"messageId": text_id, "message": "Order #1001: 2 items"})
    await _sent_id(api, r)
    r = await api.post("forward-message", {"messageId": text_id, "chatId": "201000000002"})
    await _sent_id(api, r)
    r = await api.post("delete-message-by-id", {"messageId": text_id, "forEveryone": True})
    await _sent_id(api, r)
    inbound = await api.fh.world.inject_message(api.iid, "201000000003@c.us", "hello")
    r = await api.post("react-to-message", {"messageId": f"false_201000000003@c.us_{inbound}", "reaction": "❤️"})
    await _sent_id(api, r)
    d = api.deliveries()
    kinds = [x["kind"] for x in d]
    assert kinds == ["location", "vcard", "text", "reaction", "edit", "text", "revoke", "reaction"]
    assert d[0]["latitude"] == 30.0444 and d[0]["name"] == "Pick-up"
    assert "waid=201000000009" in d[1]["vcard"] and d[1]["displayName"] == "Shop support"
    assert d[3]["targetMessageId"] == text_id and d[3]["reaction"] == "👍" and d[3]["chatId"] == "201000000001@c.us"
    assert d[4]["text"] == "Order #1001: 2 items" and d[4]["targetMessageId"] == text_id
    assert d[5]["chatId"] == "201000000002@c.us" and d[5]["forwarded"] is True
    assert d[5]["text"] == "Order #1001: 3 items"
    assert d[6]["targetMessageId"] == text_id
    assert d[7]["chatId"] == "201000000003@c.us" and d[7]["targetMessageId"] == inbound
    times = [x["at"] for x in d]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 1000  # the same pacing as text


async def test_an_idempotency_key_makes_a_media_send_once(api: Api) -> None:
    body = {"chatId": "201000000001", "mediaUrl": "http://127.0.0.1:9/parcel.jpg"}
    r1 = await api.post("send-media", body, headers={"Idempotency-Key": "order:1:photo"})
    await _sent_id(api, r1)
    r2 = await api.post("send-media", body, headers={"Idempotency-Key": "order:1:photo"})
    assert r2.status_code == 200 and r2.json()["replay"] is True and r2.json()["messageId"]
    assert len(api.deliveries()) == 1


async def test_seen_typing_presence_and_download_go_to_the_engine_at_once(api: Api) -> None:
    phone = api.fh.world.phones[api.iid]
    r = await api.post("send-seen", {"chatId": "201000000001"})
    assert r.status_code == 200 and r.json()["seen"] is True, r.text
    assert [c for c, _ in phone.seen] == ["201000000001@c.us"]
    assert (await api.post("send-typing", {"chatId": "201000000001"})).status_code == 200
    assert (await api.post("send-stop-typing", {"chatId": "201000000001"})).status_code == 200
    assert (await api.client.post(A.format(id=api.iid) + "send-presence-available")).status_code == 200
    assert [(c, s) for c, s, _ in phone.presence] == [
        ("201000000001@c.us", "typing"), ("201000000001@c.us", "paused"), (None, "available")]
    assert api.deliveries() == []  # nothing went through the outbox
    mid = await api.fh.world.inject_message(api.iid, "201000000003@c.us", "", kind="image", mimetype="image/jpeg",
                                            media=JPEG)
    r = await api.post("download-media", {"messageId": f"false_201000000003@c.us_{mid}"})
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["media"]["data"]) == JPEG and r.json()["media"]["mimetype"] == "image/jpeg"
    r = await api.post("download-media", {"messageId": mid}, headers={"accept": "application/octet-stream"})
    assert r.status_code == 200 and r.content == JPEG and r.headers["content-type"] == "image/jpeg"
    r = await api.post("download-media", {"messageId": "3EB0FFFFFFFFFFFFFFFF"})
    assert r.status_code == 404 and "3EB0FFFFFFFFFFFFFFFF" in r.json()["error"]
    big = await api.fh.world.inject_message(api.iid, "201000000003@c.us", "", kind="document", media=b"x" * 10)
    api.fh.hub.send_actions.download_max_bytes = 5
    r = await api.post("download-media", {"messageId": big})
    assert r.status_code == 422 and "MEDIA_DOWNLOAD_MAX_BYTES" in r.json()["error"]


@pytest.mark.parametrize(("action", "body", "status", "needle"), [
    ("send-media", {"chatId": "201000000001"}, 400, "mediaUrl and mediaBase64"),
    ("send-media", {"chatId": "201000000001", "mediaBase64": "!!!"}, 400, "mediaBase64 is not valid base64"),
    ("send-media", {"chatId": "201000000001", "mediaUrl": "ftp://x/y.jpg"}, 400, "mediaUrl must be an http(s) URL"),
    ("send-media", {"chatId": "201000000001", "mediaUrl": "http://169.254.169.254/a.jpg"}, 400, "mediaUrl refused"),
    ("send-media", {"chatId": "201000000001", "mediaUrl": "http://10.0.0.5/a.jpg"}, 400, "mediaUrl refused"),
    ("send-media", {"chatId": "201000000001", "mediaUrl": "http://127.0.0.1:9/missing.jpg"}, 400, "HTTP 404"),
    ("send-media", {"chatId": "201000000001", "mediaUrl": "http://127.0.0.1:9/big.bin"}, 400, "MEDIA_MAX_BYTES"),
    ("send-media", {"chatId": "201000000001", "mediaUrl": "http://127.0.0.1:9/fake.jpg"}, 400,
     "mediaUrl: declared image/jpeg"),
    ("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(b"MZ\x90\x00").decode(),
                    "mimetype": "application/x-msdownload"}, 400, "not accepted"),
    ("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(JPEG).decode(), "asVoice": True},
     400, "asVoice needs an audio file"),
    ("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(JPEG).decode(),
                    "mediaCaption": "x" * 1025}, 400, "mediaCaption is longer"),
    ("send-media", {"mediaBase64": base64.b64encode(JPEG).decode()}, 400, "chatId"),
    ("send-location", {"chatId": "201000000001", "latitude": 91, "longitude": 0}, 400, "latitude must be"),
    ("send-location", {"chatId": "201000000001", "latitude": "30", "longitude": 0}, 400, "latitude is required"),
    ("send-location", {"chatId": "201000000001", "latitude": 1, "longitude": 2, "options": {"zoom": 3}}, 400,
     "options has unknown keys"),
    ("send-vcard", {"chatId": "201000000001"}, 400, "vCard is required"),
    ("send-vcard", {"chatId": "201000000001", "vCard": {"fullName": "X"}}, 400, "vCard.phoneNumber"),
    ("send-vcard", {"chatId": "201000000001", "vCard": {"vcard": "hello"}}, 400, "vCard.vcard must be"),
    ("react-to-message", {"messageId": "3EB0AAAA", "reaction": "👍"}, 404, "messageId 3EB0AAAA"),
    ("react-to-message", {"messageId": "false_201000000001@c.us_3EB0AAAA", "reaction": "ok"}, 400,
     "reaction must be one emoji"),
    ("react-to-message", {"reaction": "👍"}, 400, "messageId is required"),
    ("edit-message", {"messageId": "false_201000000001@c.us_3EB0AAAA", "message": "x"}, 400,
     "only a message this account sent"),
    ("delete-message-by-id", {"messageId": "true_201000000001@c.us_3EB0AAAA", "forEveryone": False}, 400,
     "forEveryone=false"),
    ("forward-message", {"messageId": "false_201000000001@c.us_3EB0AAAA", "chatId": "201000000002"}, 422,
     "only its own sent messages"),
    ("send-seen", {}, 400, "chatId"),
])
async def test_bad_input_is_a_4xx_naming_the_field_and_nothing_is_queued(
        api: Api, action: str, body: dict[str, Any], status: int, needle: str) -> None:
    r = await api.post(action, body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"], r.json()
    total = (await api.client.get(f"/instances/{api.iid}/outbox")).json()["total"]
    assert total == 0


async def test_an_app_injects_a_photo_through_the_sandbox_api_and_downloads_it(api: Api) -> None:
    r = await api.client.post(f"/sandbox/instances/{api.iid}/messages", json={
        "from": "201000000003", "type": "image", "mimetype": "image/jpeg", "caption": "my parcel",
        "mediaBase64": base64.b64encode(JPEG).decode()})
    assert r.status_code == 200, r.text
    mid = r.json()["messageId"]
    r = await api.post("download-media", {"messageId": mid}, headers={"accept": "application/octet-stream"})
    assert r.status_code == 200 and r.content == JPEG
    sent = (await api.client.get(f"/sandbox/instances/{api.iid}/sent")).json()
    assert sent["status"] == "success"


async def test_an_engine_without_the_action_answers_501_with_the_reason_never_404(api: Api) -> None:
    from wahub.engines.base import Capabilities

    engine = api.fh.hub.instances[api.iid].engine
    assert engine is not None
    engine.capabilities = Capabilities()  # an engine that can send text and polls only
    r = await api.post("send-location", {"chatId": "201000000001", "latitude": 1, "longitude": 2})
    assert r.status_code == 501 and "cannot send location" in r.json()["error"], r.text
    r = await api.post("send-seen", {"chatId": "201000000001"})
    assert r.status_code == 200  # capabilities name what the outbox takes; the engine itself answers direct calls


async def test_a_media_send_whose_answer_is_lost_is_uncertain_and_never_sent_twice(api: Api) -> None:
    await api.fh.world.fault(api.iid, "send_error", {"mode": "answer_lost_silent"})
    r = await api.post("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(JPEG).decode()})
    assert r.status_code == 202
    await api.fh.advance(5 * SEC)
    item = (await api.client.get(f"/instances/{api.iid}/messages/{r.json()['queueId']}")).json()["item"]
    assert item["status"] == "uncertain"
    await api.fh.advance(120 * SEC)
    assert len(api.deliveries()) == 1
    assert "message_uncertain" in api.fh.hooks.names()


async def test_a_direct_action_the_engine_does_not_answer_is_a_503_after_the_timeout(api: Api) -> None:
    import asyncio

    engine = api.fh.hub.instances[api.iid].engine
    assert engine is not None
    never = asyncio.Event()

    async def hang(chat_id: str, message_ids: object = ()) -> None:
        await never.wait()

    engine.send_seen = hang  # type: ignore[method-assign]
    api.fh.hub.send_actions.action_timeout_ms = 50
    r = await api.post("send-seen", {"chatId": "201000000001"})
    assert r.status_code == 503 and "ENGINE_ACTION_TIMEOUT_MS" in r.json()["error"], r.text


async def test_direct_actions_on_an_instance_that_is_not_ready_are_a_409(api: Api) -> None:
    await api.fh.world.fault(api.iid, "disconnect", {})
    r = await api.post("send-seen", {"chatId": "201000000001"})
    assert r.status_code == 409 and "not ready" in r.json()["error"], r.text


async def test_an_edit_after_fifteen_minutes_is_a_422_and_a_media_forward_keeps_the_file(api: Api) -> None:
    r = await api.post("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(JPEG).decode()})
    photo = await _sent_id(api, r)
    r = await api.post("forward-message", {"messageId": photo, "chatId": "201000000002"})
    await _sent_id(api, r)
    copy = api.deliveries()[-1]
    assert copy["kind"] == "media" and copy["forwarded"] is True and copy["size"] == len(JPEG)
    assert copy["chatId"] == "201000000002@c.us"
    r = await api.client.post(A.format(id=api.iid) + "send-message", json={"chatId": "201000000001", "message": "x"})
    text_id = await _sent_id(api, r)
    r = await api.post("edit-message", {"messageId": photo, "message": "y"})
    assert r.status_code == 422 and "cannot be edited" in r.json()["error"]
    await api.fh.advance(16 * 60 * SEC)
    r = await api.post("edit-message", {"messageId": text_id, "message": "y"})
    assert r.status_code == 422 and "15 minutes" in r.json()["error"], r.text


async def test_send_media_alone_takes_a_body_above_max_body_bytes() -> None:
    fh = build(None, media_max_bytes=1_000_000, max_body_bytes=64 * 1024)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("big", HOOK_URL, [])
    await fh.link(rt.id)
    app = create_app(fh.hub, manage_hub=False)
    big = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x03" * 300_000).decode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        r = await client.post(A.format(id=rt.id) + "send-media", json={"chatId": "201000000001", "mediaBase64": big})
        assert r.status_code == 202, r.text[:300]
        r = await client.post(A.format(id=rt.id) + "send-message", json={"chatId": "201000000001", "message": big})
        assert r.status_code == 413
    await fh.hub.stop()


async def test_the_sandbox_refuses_what_whatsapp_refuses_and_the_item_fails_once(api: Api) -> None:
    r = await api.post("edit-message", {"messageId": "false_201000000001@c.us_3EB0AA", "message": "x",
                                        "fromMe": True})  # the caller claims it is its own
    assert r.status_code == 400  # the serialized id says otherwise
    r = await api.post("delete-message-by-id", {"messageId": "false_201000000001@c.us_3EB0AA"})
    assert r.status_code == 202
    await api.fh.advance(5 * SEC)
    item = (await api.client.get(f"/instances/{api.iid}/messages/{r.json()['queueId']}")).json()["item"]
    assert item["status"] == "failed" and item["errorReason"] == "not_allowed" and item["attempts"] == 1
    assert api.deliveries() == []
    assert "message_failed" in api.fh.hooks.names()


async def test_reactions_toggled_back_without_keys_end_on_the_last_one_and_a_retry_is_a_replay(api: Api) -> None:
    r = await api.client.post(A.format(id=api.iid) + "send-message", json={"chatId": "201000000001", "message": "x"})
    text_id = await _sent_id(api, r)
    answers = []
    for emoji in ("👍", "❤️", "👍", "👍"):  # the last is a client's retry of the third
        r = await api.post("react-to-message", {"messageId": text_id, "reaction": emoji})
        answers.append(r.json())
        await api.fh.advance(3 * SEC)
    assert [a["replay"] for a in answers] == [False, False, False, True]
    assert answers[3]["queueId"] == answers[2]["queueId"]
    reactions = [d["reaction"] for d in api.deliveries() if d["kind"] == "reaction"]
    assert reactions == ["👍", "❤️", "👍"]


async def test_a_retried_media_url_is_the_same_message_even_when_its_bytes_differ(api: Api) -> None:
    body = {"chatId": "201000000001", "mediaUrl": "http://127.0.0.1:9/stamped.jpg", "mediaCaption": "your parcel"}
    keyed = [await api.post("send-media", body, headers={"Idempotency-Key": "parcel-1"}) for _ in range(2)]
    assert [r.status_code for r in keyed] in ([202, 202], [202, 200]), [r.text for r in keyed]
    assert keyed[0].json()["queueId"] == keyed[1].json()["queueId"] and keyed[1].json()["replay"] is True
    keyless = [await api.post("send-media", {**body, "mediaCaption": "no key"}) for _ in range(2)]
    assert keyless[0].json()["queueId"] == keyless[1].json()["queueId"]  # a client's timeout retry
    await api.fh.advance(10 * SEC)
    assert [d["caption"] for d in api.deliveries()] == ["your parcel", "no key"]


async def test_a_stop_during_a_media_fetch_answers_503_at_once(api: Api) -> None:
    started = asyncio.Event()

    async def hanging(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()  # a media server that never answers
        raise AssertionError("unreachable")

    api.fh.hub.send_actions.media.transport = httpx.MockTransport(hanging)
    pending = asyncio.ensure_future(api.post("send-media", {"chatId": "201000000001",
                                                            "mediaUrl": "http://127.0.0.1:9/slow.jpg"}))
    await asyncio.wait_for(started.wait(), 5)
    api.fh.hub.begin_shutdown()  # what SIGTERM does first
    r = await asyncio.wait_for(pending, 5)
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
    assert api.deliveries() == [] and (await api.fh.hub.outbox.queue_stats(api.iid)).depth == 0
