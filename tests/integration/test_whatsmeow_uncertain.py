"""A whole hub on the whatsmeow engine (real worker, offline fake client): a send whose answer is lost after
the message reached the chat becomes ``uncertain`` and is never sent a second time; a receipt for the id it
went out under then settles it as ``sent`` (``message_sent`` with ``reconciled: true``)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.integration.test_whatsmeow_hub import CUSTOMER, engine_of, until
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.engines.whatsmeow.worker import FAKE_CLIENT_ENV
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    monkeypatch.setenv(FAKE_CLIENT_ENV, "wahub.engines.whatsmeow.fakeclient:FakeClient")
    h = build_hub(make_settings(tmp_path, engine="whatsmeow", send_interval_ms=0, retry_base_backoff_ms=50),
                  rng=random.Random(7))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_deliver_then_timeout_is_uncertain_with_one_delivery(hub: Hub) -> None:
    rt = await hub.create_instance("shop.myshopify.com", "http://127.0.0.1:9/hook", None)
    await until(lambda: rt.qr is not None and rt.state == State.CONNECTING)
    engine = engine_of(hub, rt.id)
    await engine.control(action="scan", phone="201000000099")
    await until(lambda: rt.state == State.READY)
    await engine.control(action="deliver_then_timeout")
    lost = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": CUSTOMER, "message": "Order #7 confirmed"},
                             header_key="order:7")

    async def status(queue_id: str, wanted: ItemStatus) -> Any:
        item = await hub.outbox.get_item(rt.id, queue_id)
        return item if item.status == wanted else None

    item = await until(lambda: status(lost.item.queue_id, ItemStatus.UNCERTAIN))
    assert item.last_error and "deadline exceeded" in item.last_error
    after = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": CUSTOMER, "message": "next"}, header_key="n")
    await until(lambda: status(after.item.queue_id, ItemStatus.SENT))
    sent = [s["message"]["conversation"] for s in (await engine.control(action="sent"))["sent"]]
    assert sent == ["Order #7 confirmed", "next"]  # once, never retried
    assert (await hub.outbox.get_item(rt.id, lost.item.queue_id)).status == ItemStatus.UNCERTAIN


async def test_deliver_then_timeout_is_uncertain_then_sent_when_its_receipt_arrives(hub: Hub) -> None:
    rt = await hub.create_instance("shop.myshopify.com", "http://127.0.0.1:9/hook", None)
    await until(lambda: rt.qr is not None and rt.state == State.CONNECTING)
    engine = engine_of(hub, rt.id)
    await engine.control(action="scan", phone="201000000099")
    await until(lambda: rt.state == State.READY)
    await engine.control(action="deliver_then_timeout")
    lost = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": CUSTOMER, "message": "Order #8 confirmed"},
                                    header_key="order:8")
    queue_id = lost.item.queue_id

    async def status(wanted: ItemStatus) -> Any:
        item = await hub.outbox.get_item(rt.id, queue_id)
        return item if item.status == wanted else None

    async def events(name: str) -> list[dict[str, Any]]:
        stored = await hub.store.list_events(rt.id, status=None, limit=200)
        return [json.loads(e.body)["data"] for e in stored if e.event == name]

    uncertain = await until(lambda: status(ItemStatus.UNCERTAIN))
    assert uncertain.chosen_message_id and uncertain.message_id is None
    assert await events("message_sent") == []
    assert await events("message_uncertain") == []  # still inside the evidence window
    sent = (await engine.control(action="sent"))["sent"]
    assert [s["message"]["conversation"] for s in sent] == ["Order #8 confirmed"]
    # WhatsApp's receipt names the id the message went out under on the wire
    await engine.control(action="receipt", chat=sent[0]["to"], ids=[sent[0]["id"]], ack="delivered")
    item = await until(lambda: status(ItemStatus.SENT))
    assert item.message_id == uncertain.chosen_message_id and item.attempts == 1
    reported = await until(lambda: events("message_sent"))
    assert len(reported) == 1 and reported[0]["reconciled"] is True
    assert reported[0]["messageId"] == uncertain.chosen_message_id
    assert await events("message_uncertain") == []
    assert len((await engine.control(action="sent"))["sent"]) == 1  # exactly one delivery, never retried
