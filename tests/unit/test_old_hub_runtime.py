"""The runtime keeps the existing wa-hub's webhook shapes and send settings (fake clock, in-process hub).

Each test drives the hub built by the composition root (memory store, sandbox engine) and asserts
on what a receiver gets (the webhook bodies the hub POSTed) or on the sandbox's own records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.fakehub import HOOK_URL, FakeHub, build
from wahub.domain.errors import InvalidInput
from wahub.domain.lifecycle import State
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.runtime.events import WA_STATES

PROBE_MS = 5_000


def iso_ms(value: str) -> int:
    """Epoch ms of an ISO string as Node's ``toISOString`` writes it."""
    assert value.endswith("Z") and len(value) == 24, value
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)


async def started(events: list[str] | None = None, **settings: Any) -> tuple[FakeHub, str]:
    fh = build(None, ready_probe_timeout_ms=PROBE_MS, **settings)
    await fh.hub.start(restore=False)
    rt = await fh.hub.create_instance("shop", HOOK_URL, events)
    await fh.advance(10)
    return fh, rt.id


async def test_authenticated_and_ready_pass_an_event_filter_that_leaves_them_out() -> None:
    fh, iid = await started(["vote_update"])
    await fh.link(iid)
    await fh.advance(2_000)
    assert fh.state(iid) == State.READY
    assert fh.hooks.names() == ["authenticated", "ready"]  # change_state, qr stay filtered out


async def test_change_state_status_carries_the_old_values_and_state_ours() -> None:
    fh, iid = await started()
    await fh.link(iid)
    await fh.world.fault(iid, "disconnect", {})
    await fh.advance(60_000)
    changes = [(b["data"]["status"], b["data"]["state"]) for b in fh.hooks.of("change_state")]
    assert changes[:4] == [("UNPAIRED", "connecting"), ("CONNECTED", "ready"), ("TIMEOUT", "disconnected"),
                           ("OPENING", "initializing")], changes
    assert changes[-1] == ("CONNECTED", "ready")
    assert set(WA_STATES) == set(State)  # every state has an old value


async def test_ready_timeout_is_sent_with_elapsed_time_authentication_instant_and_state() -> None:
    fh, iid = await started(["message"])
    await fh.world.fault(iid, "never_ready", {"enabled": True})
    before = fh.clock.now_ms()
    await fh.link(iid)
    linked = fh.clock.now_ms()
    assert set(fh.hooks.names()) == {"authenticated"}  # the filter lets only this through so far
    await fh.advance(PROBE_MS)
    [body] = fh.hooks.of("ready_timeout")
    data = body["data"]
    assert data["elapsedMs"] == PROBE_MS  # the probe waited READY_PROBE_TIMEOUT_MS after authentication
    assert before <= iso_ms(data["authenticatedAt"]) <= linked
    assert data["state"] == "connecting"
    assert fh.state(iid) == State.DISCONNECTED  # and the ladder reconnects, as before


async def test_restricted_carries_the_end_as_iso_and_epoch_ms_with_a_message() -> None:
    fh, iid = await started()
    await fh.link(iid)
    banned_at = fh.clock.now_ms()
    await fh.world.fault(iid, "temporary_ban", {"expires_in_ms": 3_600_000, "code": "101"})
    [body] = fh.hooks.of("restricted")
    data = body["data"]
    assert data["restrictedUntilMs"] == banned_at + 3_600_000
    assert iso_ms(data["restrictedUntil"]) == banned_at + 3_600_000
    assert data["restrictedUntil"] in data["message"] and data["code"] == "101"
    assert fh.hooks.of("change_state")[-1]["data"]["status"] == "TOS_BLOCK"


async def _typing_calls(fh: FakeHub, iid: str) -> list[str]:
    engine = fh.hub.instances[iid].engine
    assert engine is not None
    calls: list[str] = []

    async def send_typing(chat_id: str) -> None:
        calls.append(chat_id)

    engine.send_typing = send_typing  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize(("default", "own", "typed"), [(False, True, True), (True, False, False),
                                                       (True, None, True), (False, None, False)])
async def test_the_typing_indicator_follows_the_instance_setting_else_the_default(
        default: bool, own: bool | None, typed: bool) -> None:
    fh, iid = await started(typing_indicator_enabled=default, send_interval_ms=0)
    await fh.link(iid)
    await fh.hub.update_instance(iid, settings={"typingIndicatorEnabled": own})
    calls = await _typing_calls(fh, iid)
    await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": "hi"}, header_key="k1")
    await fh.advance(5_000)
    assert len(fh.world.phones[iid].deliveries) == 1
    assert calls == (["201000000001@c.us"] if typed else [])


async def test_a_national_number_is_completed_with_the_instance_country_code() -> None:
    fh, iid = await started()
    with pytest.raises(InvalidInput, match="national number"):
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "01000000001", "message": "hi"}, header_key=None)
    await fh.hub.update_instance(iid, settings={"defaultCountryCode": "+20"})
    one = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "01000000001", "message": "hi"}, header_key=None)
    two = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "+20 100 000 0001", "message": "hi"},
                                      header_key=None)
    assert one.item.chat_id == "201000000001@c.us"
    assert (two.replay, two.item.queue_id) == (True, one.item.queue_id)  # one number, one item
    with pytest.raises(InvalidInput, match="defaultCountryCode"):
        await fh.hub.update_instance(iid, settings={"defaultCountryCode": "Egypt"})


async def test_status_broadcast_is_accepted_for_sends_and_number_checks_only_when_allowed() -> None:
    for allowed in (False, True):
        fh, iid = await started(allow_status_broadcast=allowed)
        await fh.link(iid)
        body = {"chatId": "status@broadcast", "message": "hi"}
        if not allowed:
            with pytest.raises(InvalidInput, match="ALLOW_STATUS_BROADCAST"):
                await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, body, header_key=None)
            with pytest.raises(InvalidInput, match="ALLOW_STATUS_BROADCAST"):
                await fh.hub.is_registered(iid, "status@broadcast")
            continue
        result = await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, body, header_key=None)
        assert result.item.chat_id == "status@broadcast"
        await fh.hub.is_registered(iid, "status@broadcast")


async def test_a_key_imported_from_the_old_hub_replays_whatever_the_payload_and_is_never_sent() -> None:
    fh, iid = await started(send_interval_ms=0)
    assert await fh.store.insert_sent_item(
        queue_id="q-old", instance_id=iid, idempotency_key="order:1001:v1", key_source="imported", kind="text",
        chat_id="", payload={}, fingerprint="imported", message_id="true_201000000001@c.us_OLD1",
        created_at=fh.clock.now_ms() - 86_400_000, sent_at=fh.clock.now_ms() - 86_399_000)
    await fh.link(iid)
    poll = {"chatId": "201000000001", "caption": "Confirm?", "options": ["Yes", "No"],
            "idempotencyKey": "order:1001:v1"}
    result = await fh.hub.outbox.enqueue(iid, ItemKind.POLL, poll, header_key=None)
    assert (result.replay, result.item.status, result.item.message_id) == (
        True, ItemStatus.SENT, "true_201000000001@c.us_OLD1")
    await fh.advance(10_000)
    assert fh.world.phones[iid].deliveries == []


async def test_delete_reports_the_open_items_it_deleted() -> None:
    fh, iid = await started()
    for i in range(3):
        await fh.hub.outbox.enqueue(iid, ItemKind.TEXT, {"chatId": "201000000001", "message": f"m{i}"},
                                    header_key=f"k{i}")
    assert await fh.hub.delete_instance(iid) == 3
    assert await fh.hub.delete_instance(iid) is None
