"""The instances port on every implementation."""

from __future__ import annotations

import pytest

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, draft, enqueue, send
from wahub.domain.errors import Conflict, NotFound
from wahub.store.base import Store

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


# -- instances -------------------------------------------------------------------------------------------
async def test_instance_create_read_update_delete(store: Store) -> None:
    rec = await store.create_instance(id="c", name="Shop C", webhook_url="http://127.0.0.1:9/hook",
                                      webhook_events=["message", "vote_update"], webhook_secret="s3",
                                      now=T0 + 5, state="stopped")
    assert (rec.id, rec.name, rec.webhook_url, rec.webhook_events, rec.webhook_secret) == (
        "c", "Shop C", "http://127.0.0.1:9/hook", ["message", "vote_update"], "s3")
    assert (rec.state, rec.state_since, rec.created_at) == ("stopped", T0 + 5, T0 + 5)
    assert (rec.state_reason, rec.restricted_until, rec.phone, rec.limit_per_minute, rec.last_error) == (
        None, None, None, None, None)
    assert await store.get_instance("c") == rec
    assert [r.id for r in await store.list_instances()] == ["a", "b", "c"]

    await store.update_instance("c", webhook_events=["message"], limit_per_minute=3, phone="201000000009")
    got = await store.get_instance("c")
    assert got is not None
    assert (got.webhook_events, got.limit_per_minute, got.phone, got.name) == (
        ["message"], 3, "201000000009", "Shop C")
    with pytest.raises(NotFound):
        await store.update_instance("nope", name="x")

    assert await store.delete_instance("c") == 0  # existed, no open items
    assert await store.get_instance("c") is None
    assert await store.delete_instance("c") is None
    assert [r.id for r in await store.list_instances()] == ["a", "b"]


async def test_send_settings_are_stored_on_create_and_update(store: Store) -> None:
    rec = await store.create_instance(id="d", name="D", webhook_url=None, webhook_events=[], webhook_secret=None,
                                      now=T0, typing_indicator_enabled=False, apply_typing_to=["customer"])
    assert (rec.default_country_code, rec.typing_indicator_enabled, rec.apply_typing_to) == (
        None, False, ["customer"])
    await store.update_instance("d", default_country_code="20", typing_indicator_enabled=True,
                                apply_typing_to=["customer", "merchant"])
    got = await store.get_instance("d")
    assert got is not None
    assert (got.default_country_code, got.typing_indicator_enabled, got.apply_typing_to) == (
        "20", True, ["customer", "merchant"])
    await store.update_instance("d", default_country_code=None, typing_indicator_enabled=None, apply_typing_to=None)
    got = await store.get_instance("d")
    assert got is not None
    assert (got.default_country_code, got.typing_indicator_enabled, got.apply_typing_to) == (None, None, None)
    plain = await store.get_instance("a")
    assert plain is not None and (plain.default_country_code, plain.typing_indicator_enabled) == (None, None)


async def test_delete_counts_the_open_items_it_deleted(store: Store) -> None:
    for key in ("k1", "k2", "k3"):
        await enqueue(store, key, instance="a")
    claimed = await store.claim_next("a", T0)  # one sending, two queued
    assert claimed is not None
    await enqueue(store, "kb", instance="b")
    assert await store.delete_instance("a") == 3
    assert await store.delete_instance("b") == 1


async def test_a_sent_item_is_imported_in_one_step_and_only_once(store: Store) -> None:
    kwargs = {"instance_id": "a", "idempotency_key": "order:1:v1", "key_source": "imported", "kind": "text",
              "chat_id": "", "payload": {"oldQueueItemId": "q-1"}, "fingerprint": "imported",
              "message_id": "true_1@c.us_OLD", "created_at": T0 - 10_000, "sent_at": T0 - 9_000}
    assert await store.insert_sent_item(queue_id="q1", **kwargs) is True
    assert await store.insert_sent_item(queue_id="q2", **{**kwargs, "message_id": "other"}) is False
    item = await store.find_item_by_key("a", "order:1:v1")
    assert item is not None
    assert (item.queue_id, item.status.value, item.message_id, item.sent_at, item.key_source) == (
        "q1", "sent", "true_1@c.us_OLD", T0 - 9_000, "imported")
    assert await store.claim_next("a", T0 + 1) is None  # never offered to the send loop
    assert await store.send_history("a", 0) == []  # an old send is no part of this hub's rate windows
    assert (await store.queue_stats("a")).depth == 0


async def test_duplicate_instance_id_is_a_conflict(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.create_instance(id="a", name="again", webhook_url=None, webhook_events=[],
                                    webhook_secret=None, now=T0 + 9)
    rec = await store.get_instance("a")
    assert rec is not None and rec.name == "A"


async def test_delete_instance_removes_everything_it_recorded(store: Store) -> None:
    queue_ids = {}
    for inst in ("a", "b"):
        item, _, _ = await enqueue(store, "k1", instance=inst)
        queue_ids[inst] = item.queue_id
        claimed = await store.claim_next(inst, T0)
        assert claimed is not None
        await send(store, claimed, f"m-{inst}", T0 + 1)
        await store.record_inbound(inst, "in-1", now=T0, event=draft(inst, "message"))
        await store.record_restart(inst, kind="soft", reason=None, now=T0)
        await store.record_transition(inst, from_state="initializing", to_state="connecting", reason=None,
                                      now=T0)
    assert await store.delete_instance("a") == 0  # its one item was sent: nothing open was dropped
    assert await store.find_item_by_key("a", "k1") is None
    assert await store.send_history("a", 0) == [T0 + 1]  # the rate windows outlive the instance row
    assert await store.list_events("a", status=None, limit=10) == []
    assert await store.restarts_since("a", 0) == []
    assert await store.transitions("a") == []
    # a new instance under the same id: inbound ids were forgotten, its sent keys come back
    await store.create_instance(id="a", name="A2", webhook_url=None, webhook_events=[], webhook_secret=None,
                                now=T0 + 2)
    assert await store.record_inbound("a", "in-1", now=T0 + 2, event=None) is True
    back = await store.find_item_by_key("a", "k1")
    assert back is not None and (back.queue_id, back.status.value, back.message_id) == (queue_ids["a"], "sent", "m-a")
    # the other instance is untouched
    assert (await store.find_item_by_key("b", "k1")) is not None
    assert await store.send_history("b", 0) == [T0 + 1]
    assert len(await store.list_events("b", status=None, limit=10)) == 1
    assert await store.record_inbound("b", "in-1", now=T0 + 2, event=None) is False


async def test_a_re_created_id_gets_its_finished_items_back_until_the_purge(store: Store) -> None:
    await enqueue(store, "sent-key", instance="a")
    claimed = await store.claim_next("a", T0)
    assert claimed is not None
    await send(store, claimed, "m-1", T0 + 1)
    await enqueue(store, "open-key", instance="a")
    assert await store.delete_instance("a") == 1  # the queued one is dropped, the sent one retired
    await store.create_instance(id="a", name="A", webhook_url=None, webhook_events=[], webhook_secret=None,
                                now=T0 + 5)
    assert (await store.find_item_by_key("a", "sent-key")) is not None
    assert await store.find_item_by_key("a", "open-key") is None
    # a second delete retires it again; the purge then forgets it for good
    assert await store.delete_instance("a") == 0
    await store.purge(T0 + 10_000)
    await store.create_instance(id="a", name="A", webhook_url=None, webhook_events=[], webhook_secret=None,
                                now=T0 + 20_000)
    assert await store.find_item_by_key("a", "sent-key") is None
