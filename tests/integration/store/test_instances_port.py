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

    assert await store.delete_instance("c") is True
    assert await store.get_instance("c") is None
    assert await store.delete_instance("c") is False
    assert [r.id for r in await store.list_instances()] == ["a", "b"]


async def test_duplicate_instance_id_is_a_conflict(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.create_instance(id="a", name="again", webhook_url=None, webhook_events=[],
                                    webhook_secret=None, now=T0 + 9)
    rec = await store.get_instance("a")
    assert rec is not None and rec.name == "A"


async def test_delete_instance_removes_everything_it_recorded(store: Store) -> None:
    for inst in ("a", "b"):
        item, _, _ = await enqueue(store, "k1", instance=inst)
        claimed = await store.claim_next(inst, T0)
        assert claimed is not None
        await send(store, claimed, f"m-{inst}", T0 + 1)
        await store.record_inbound(inst, "in-1", now=T0, event=draft(inst, "message"))
        await store.record_restart(inst, kind="soft", reason=None, now=T0)
        await store.record_transition(inst, from_state="initializing", to_state="connecting", reason=None,
                                      now=T0)
    assert await store.delete_instance("a") is True
    assert await store.find_item_by_key("a", "k1") is None
    assert await store.send_history("a", 0) == []
    assert await store.list_events("a", status=None, limit=10) == []
    assert await store.restarts_since("a", 0) == []
    assert await store.transitions("a") == []
    # a new instance under the same id starts clean: inbound ids were forgotten too
    await store.create_instance(id="a", name="A2", webhook_url=None, webhook_events=[], webhook_secret=None,
                                now=T0 + 2)
    assert await store.record_inbound("a", "in-1", now=T0 + 2, event=None) is True
    # the other instance is untouched
    assert (await store.find_item_by_key("b", "k1")) is not None
    assert await store.send_history("b", 0) == [T0 + 1]
    assert len(await store.list_events("b", status=None, limit=10)) == 1
    assert await store.record_inbound("b", "in-1", now=T0 + 2, event=None) is False
