"""The send actions through the HTTP API of a hub on the whatsmeow engine (real worker, offline fake client)."""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.integration.test_whatsmeow_hub import engine_of, until
from tests.support.server import API_KEY
from wahub.domain.lifecycle import State
from wahub.engines.whatsmeow.worker import FAKE_CLIENT_ENV
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub
from wahub.web.app import create_app

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x07" * 300


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    monkeypatch.setenv(FAKE_CLIENT_ENV, "wahub.engines.whatsmeow.fakeclient:FakeClient")
    settings = make_settings(tmp_path, engine="whatsmeow", send_interval_ms=0, restart_backoff_ms=50,
                             max_sends_per_minute=60)
    h = build_hub(settings, rng=random.Random(7))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_every_queued_action_reaches_the_worker_as_a_whatsapp_message(hub: Hub) -> None:
    rt = await hub.create_instance("shop", "http://127.0.0.1:9/hook", None)
    await until(lambda: rt.qr is not None and rt.state == State.CONNECTING)
    engine = engine_of(hub, rt.id)
    await engine.control(action="scan", phone="201000000099")
    await until(lambda: rt.state == State.READY)
    app = create_app(hub, manage_hub=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        base = f"/instances/{rt.id}/client/action/"

        async def sent(action: str, body: dict[str, Any]) -> str:
            r = await client.post(base + action, json=body)
            assert r.status_code == 202, r.text

            async def done() -> Any:
                item = (await client.get(f"/instances/{rt.id}/messages/{r.json()['queueId']}")).json()["item"]
                return item["messageId"] if item["status"] == "sent" else None

            return str(await until(done))

        await sent("send-media", {"chatId": "201000000001", "mediaBase64": base64.b64encode(PNG).decode(),
                                  "mediaCaption": "parcel"})
        await sent("send-location", {"chatId": "201000000001", "latitude": 1.5, "longitude": 2.5})
        await sent("send-vcard", {"chatId": "201000000001", "vCard": {"fullName": "Help", "phoneNumber": "2010"}})
        text_id = await sent("send-message", {"chatId": "201000000001", "message": "Order #7"})
        await sent("react-to-message", {"messageId": text_id, "reaction": "✅"})
        await sent("edit-message", {"messageId": text_id, "message": "Order #7 (edited)"})
        await sent("forward-message", {"messageId": text_id, "chatId": "201000000002"})
        await sent("delete-message-by-id", {"messageId": text_id})
        r = await client.post(base + "send-seen", json={"chatId": "201000000001"})
        assert r.status_code == 200, r.text
    records = (await engine.control(action="sent"))["sent"]
    fields = [next(iter(rec["message"])) for rec in records]
    assert fields == ["imageMessage", "locationMessage", "contactMessage", "conversation", "reactionMessage",
                      "editedMessage", "extendedTextMessage", "protocolMessage"]
    wire_text_id = records[3]["id"]
    assert records[4]["message"]["reactionMessage"]["key"]["ID"] == wire_text_id
    assert records[7]["message"]["protocolMessage"]["key"]["ID"] == wire_text_id
    assert records[6]["to"] == "201000000002@s.whatsapp.net"
    assert records[0]["message"]["imageMessage"]["caption"] == "parcel"
