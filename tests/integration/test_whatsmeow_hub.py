"""A whole hub on the whatsmeow engine: real worker subprocesses, the offline fake client.

The hub is built by the composition root exactly as ``wa-hub serve`` builds it; only the worker's
client is replaced (``WAHUB_WHATSMEOW_FAKE_CLIENT``), so nothing reaches WhatsApp.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.engines.whatsmeow.engine import WhatsmeowEngine
from wahub.engines.whatsmeow.worker import FAKE_CLIENT_ENV
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

CUSTOMER = "201000000001@c.us"


async def until(condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll ``condition`` (sync or async) until truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    monkeypatch.setenv(FAKE_CLIENT_ENV, "wahub.engines.whatsmeow.fakeclient:FakeClient")
    settings = make_settings(tmp_path, engine="whatsmeow", send_interval_ms=0, restart_backoff_ms=50)
    h = build_hub(settings, rng=random.Random(7))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


def engine_of(hub: Hub, instance_id: str) -> WhatsmeowEngine:
    engine = hub.instances[instance_id].engine
    assert isinstance(engine, WhatsmeowEngine)
    return engine


async def test_link_send_vote_crash_and_logout(hub: Hub, tmp_path: Path) -> None:
    rt = await hub.create_instance("shop.myshopify.com", "http://127.0.0.1:9/hook", None)
    await until(lambda: rt.qr is not None and rt.state == State.CONNECTING)
    await engine_of(hub, rt.id).control(action="scan", phone="201000000099")
    await until(lambda: rt.state == State.READY)
    assert rt.phone == "201000000099"

    text = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, {"chatId": CUSTOMER, "message": "Order #1 confirmed"},
                             header_key="order:1:text")
    poll = await hub.outbox.enqueue(rt.id, ItemKind.POLL, {"chatId": CUSTOMER, "caption": "Confirm order #1?",
                                                    "options": ["Yes", "No"], "multipleAnswers": False},
                             header_key="order:1:poll")

    async def sent(queue_id: str) -> Any:
        item = await hub.outbox.get_item(rt.id, queue_id)
        return item if item.status == ItemStatus.SENT else None

    text_item = await until(lambda: sent(text.item.queue_id))
    poll_item = await until(lambda: sent(poll.item.queue_id))
    assert text_item.message_id and poll_item.message_id

    await engine_of(hub, rt.id).control(action="vote", poll_id=poll_item.message_id, options=["No"],
                                        voter="99887766554433@lid", voter_alt="201000000001@s.whatsapp.net",
                                        chat="201000000001@s.whatsapp.net")

    async def vote_event() -> Any:
        events = await hub.list_events(rt.id, limit=50)
        votes = [json.loads(e.body) for e in events if e.event == "vote_update"]
        return votes[0] if votes else None

    vote = await until(vote_event)
    assert vote["data"]["vote"]["selectedOptions"] == ["No"]
    assert vote["data"]["idempotencyKey"] == "order:1:poll"
    assert vote["data"]["voterPhone"] == "201000000001"

    # the worker dies: a disconnect, then the ladder brings a new worker up with the stored session
    old_pid = engine_of(hub, rt.id).pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    await until(lambda: rt.state == State.DISCONNECTED)
    await until(lambda: rt.state == State.READY)
    assert engine_of(hub, rt.id).pid != old_pid

    session = tmp_path / "sessions" / rt.id
    assert session.exists()
    await hub.logout(rt.id)
    assert rt.state == State.LOGGED_OUT
    assert not session.exists()
