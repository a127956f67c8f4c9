"""The SDK's reads, chat actions and group calls on the whatsmeow engine: a real worker subprocess with
the offline fake client, the official SDK (``AsyncWaAPI``) talking to the hub's ASGI app.

Every call of :mod:`tests.acceptance.sdk_methods` either succeeds (what neonize exposes) or answers
501 naming why whatsmeow cannot do it, never 404. The first send to a Brazilian number typed with
its ninth digit goes to the id WhatsApp (the fake) answered for it.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from waapi import AsyncWaAPI, ServerError

from tests.acceptance import sdk_methods as m
from tests.conftest import make_settings
from tests.support.polling import until
from tests.support.server import API_KEY
from wahub.domain.lifecycle import State
from wahub.engines.whatsmeow.engine import WhatsmeowEngine
from wahub.engines.whatsmeow.worker import FAKE_CLIENT_ENV
from wahub.engines.whatsmeow.workerdirectory import UNSUPPORTED
from wahub.runtime.compose import build_hub
from wahub.runtime.hub import Hub
from wahub.web.app import create_app

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    monkeypatch.setenv(FAKE_CLIENT_ENV, "wahub.engines.whatsmeow.fakeclient:FakeClient")
    settings = make_settings(tmp_path, engine="whatsmeow", send_interval_ms=0, waapi_envelope=True)
    h = build_hub(settings, rng=random.Random(7))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


def _action(method: str, kwargs: dict[str, Any]) -> str:
    return str(kwargs["name"]) if method == "action" else method.replace("_", "-")


async def test_sdk_directory_calls_run_or_answer_501_with_the_reason(hub: Hub, tmp_path: Path) -> None:
    rt = await hub.create_instance("wm-reads", None, None)
    await until(lambda: _async(rt.qr is not None), within_s=30)
    engine = rt.engine
    assert isinstance(engine, WhatsmeowEngine)
    await engine.control(action="scan", phone="201000000099", push_name="Shop")
    await until(lambda: _async(rt.state == State.READY), within_s=30)
    await engine.control(action="contact", jid=m.CUSTOMER, push_name="Mona", full_name="Mona Ali")
    await engine.control(action="profile_picture", jid=m.CUSTOMER, url="https://pps.whatsapp.net/v/mona.jpg")
    await engine.control(action="number_alias", number="5511987654321", jid="551187654321@c.us")

    app = create_app(hub, manage_hub=False)
    sdk = AsyncWaAPI(token=API_KEY, instance_id=rt.id, base_url="http://hub", transport=httpx.ASGITransport(app=app))
    ctx, ran, refused = m.Ctx(message_id="3EB0C767D26A1D2E8F4B"), [], []
    try:
        for method, make in m.READS + m.CHAT_ACTIONS + m.GROUPS:
            kwargs = make(ctx)
            action = _action(method, kwargs)
            call = sdk.action(kwargs["name"], kwargs["payload"]) if method == "action" \
                else getattr(sdk, method)(**kwargs)
            if action in UNSUPPORTED:
                with pytest.raises(ServerError, match="HTTP 501") as failure:
                    await call
                assert UNSUPPORTED[action] in str(failure.value)
                refused.append(method)
                continue
            answer = await call
            ctx.answers[method] = answer
            if method == "create_group":
                ctx.group_id = answer["data"]["groupInfo"]["id"]["_serialized"]
            if method == "action":
                ctx.invite_code = answer["data"]["invite"]["inviteCode"]
            ran.append(method)

        contacts = ctx.answers["get_contacts"]["data"]["contacts"]
        assert [(c["id"]["_serialized"], c["pushname"], c["name"]) for c in contacts] == [
            (m.CUSTOMER, "Mona", "Mona Ali")]
        assert ctx.answers["get_profile_pic_url"]["data"]["profilePicUrl"] == "https://pps.whatsapp.net/v/mona.jpg"
        assert ctx.answers["get_number_id"]["data"]["numberId"]["_serialized"] == m.CUSTOMER
        info = ctx.answers["update_group_settings"]["data"]["groupInfo"]
        assert (info["subject"], info["description"], info["announce"]) == ("Orders today", "daily", True)
        roles = {p["id"]["_serialized"]: p["isAdmin"] for p in info["participants"]}
        assert roles == {"201000000099@c.us": True, m.CUSTOMER: False}  # the friend was added, promoted, removed
        assert ctx.answers["accept_invite"]["data"]["groupId"] == ctx.group_id
        assert len(ran) >= 30 and set(refused) == {x for x, _ in m.READS + m.CHAT_ACTIONS + m.GROUPS} - set(ran)

        # The first send to a number goes to the id WhatsApp knows it by.
        r = await sdk.send_message(chat_id="+55 11 98765-4321", message="Oi")
        assert r["data"]["queued"] is True

        async def sent() -> list[dict[str, Any]] | None:
            got = (await engine.control(action="sent"))["sent"]
            return got or None

        got = await until(sent, within_s=30)
        assert [g["to"] for g in got] == ["551187654321@s.whatsapp.net"], json.dumps(got)[:300]
    finally:
        await sdk.aclose()


async def _async(value: bool) -> bool:
    return value
