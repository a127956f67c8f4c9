"""The official WaAPI SDK's send actions run against the sandbox (``WAAPI_ENVELOPE=true``) and reach the chat."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from waapi import WaAPI

from tests.support.server import API_KEY, Server

JPEG = b"\xff\xd8\xff\xe0" + b"\x02" * 200


@pytest.mark.timeout(120)
def test_sdk_media_location_vcard_reaction_edit_delete_forward_seen_typing_and_download(tmp_path: Path) -> None:
    env = {"WAAPI_ENVELOPE": "true", "SEND_INTERVAL_MS": "0", "MAX_SENDS_PER_MINUTE_PER_INSTANCE": "30",
           "SANDBOX_SEND_LATENCY_MS": "0"}
    with Server(tmp_path / "hub", env=env) as hub:
        assert hub.client.post("/instances", json={"name": "sdk-shop"}).status_code == 200
        hub.wait_until(lambda: hub.client.get("/instances/sdk-shop/client/qr").status_code == 200)
        hub.client.post("/sandbox/instances/sdk-shop/scan")
        sdk = WaAPI(token=API_KEY, instance_id="sdk-shop", base_url=hub.url)
        try:
            hub.wait_until(lambda: sdk.get_status()["clientStatus"]["instanceStatus"] == "ready")
            chat = "201000000001@c.us"

            def sent(answer: dict[str, object]) -> str:
                data = answer["data"]
                assert isinstance(data, dict) and data["queued"] is True
                qid = data["queueId"]
                hub.wait_until(lambda: hub.client.get(f"/instances/sdk-shop/messages/{qid}").json()["item"]["status"]
                               == "sent")
                return str(hub.client.get(f"/instances/sdk-shop/messages/{qid}").json()["item"]["messageId"])

            sent(sdk.send_media(chat, media_base64=base64.b64encode(JPEG).decode(), media_caption="parcel"))
            sent(sdk.send_location(chat, 30.0444, 31.2357, options={"name": "Pick-up"}))
            sent(sdk.send_vcard(chat, {"fullName": "Support", "phoneNumber": "201000000009"}))
            text = sent(sdk.send_message(chat, "Order #1001: 3 items"))
            sent(sdk.react_to_message(text, "👍"))
            sent(sdk.edit_message(text, "Order #1001: 2 items"))
            sent(sdk.forward_message(text, "201000000002@c.us"))
            sent(sdk.delete_message_by_id(text, for_everyone=True))
            assert sdk.send_seen(chat)["data"]["seen"] is True
            assert sdk.send_typing(chat)["data"]["presence"] == "typing"
            assert sdk.send_stop_typing(chat_id=chat)["data"]["presence"] == "paused"
            assert sdk.send_presence_available()["status"] == "success"
            assert sdk.send_presence_unavailable()["status"] == "success"
            injected = hub.client.post("/sandbox/instances/sdk-shop/messages", json={
                "from": "201000000003", "type": "image", "mimetype": "image/jpeg",
                "mediaBase64": base64.b64encode(JPEG).decode()}).json()["messageId"]
            media = sdk.download_media(f"false_201000000003@c.us_{injected}")["data"]["media"]
            assert base64.b64decode(media["data"]) == JPEG and media["mimetype"] == "image/jpeg"
        finally:
            sdk.close()
        kinds = [d["kind"] for d in hub.client.get("/sandbox/instances/sdk-shop/sent").json()["messages"]]
        assert kinds == ["media", "location", "vcard", "text", "reaction", "edit", "text", "revoke"]
