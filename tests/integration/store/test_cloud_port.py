"""The cloud port and ``instances.engine`` on every implementation (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.integration.store.conftest import IMPLEMENTATIONS, T0
from wahub.domain.errors import Conflict, NotFound
from wahub.store import migrate
from wahub.store.base import Store
from wahub.store.sql import SqlStore

CHAT = "201000000001@c.us"


@pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)
async def test_an_instance_keeps_the_engine_it_was_created_with(store: Store) -> None:
    rec = await store.create_instance(id="c", name="C", webhook_url=None, webhook_events=[], webhook_secret=None,
                                      now=T0, engine="cloud")
    assert rec.engine == "cloud"
    got = await store.get_instance("c")
    assert got is not None and got.engine == "cloud"
    await store.update_instance("c", name="C2")
    assert {r.id: r.engine for r in await store.list_instances()}["c"] == "cloud"


@pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)
async def test_credentials_are_stored_replaced_and_one_phone_number_belongs_to_one_instance(store: Store) -> None:
    assert await store.get_cloud_credentials("a") is None
    await store.put_cloud_credentials("a", sealed="sealed-1", phone_number_id="111", now=T0)
    await store.put_cloud_credentials("a", sealed="sealed-2", phone_number_id="111", now=T0 + 5)  # replaced
    got = await store.get_cloud_credentials("a")
    assert got is not None and (got.sealed, got.phone_number_id, got.updated_at) == ("sealed-2", "111", T0 + 5)
    with pytest.raises(Conflict):
        await store.put_cloud_credentials("b", sealed="other", phone_number_id="111", now=T0)
    assert await store.get_cloud_credentials("b") is None
    with pytest.raises(NotFound):
        await store.put_cloud_credentials("nope", sealed="x", phone_number_id="222", now=T0)


@pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)
async def test_deleting_an_instance_deletes_its_credentials_and_window_clock(store: Store) -> None:
    await store.put_cloud_credentials("a", sealed="s", phone_number_id="111", now=T0)
    await store.note_chat_inbound("a", CHAT, T0)
    await store.note_chat_inbound("b", CHAT, T0)
    assert await store.delete_instance("a") == 0  # deleted, with no open items
    assert await store.get_cloud_credentials("a") is None
    assert await store.last_chat_inbound("a", CHAT) is None
    assert await store.last_chat_inbound("b", CHAT) == T0
    # the phone number is free again for a new instance
    await store.put_cloud_credentials("b", sealed="s", phone_number_id="111", now=T0)


@pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)
async def test_the_last_inbound_time_only_moves_forward_per_chat(store: Store) -> None:
    assert await store.last_chat_inbound("a", CHAT) is None
    await store.note_chat_inbound("a", CHAT, T0 + 100)
    await store.note_chat_inbound("a", CHAT, T0 + 50)  # a late, older webhook does not move it back
    assert await store.last_chat_inbound("a", CHAT) == T0 + 100
    await store.note_chat_inbound("a", CHAT, T0 + 200)
    assert await store.last_chat_inbound("a", CHAT) == T0 + 200
    assert await store.last_chat_inbound("a", "201000000002@c.us") is None
    assert await store.last_chat_inbound("b", CHAT) is None


@pytest.mark.parametrize("fresh_store", [p for p in IMPLEMENTATIONS if p.id != "memory"], indirect=True)
async def test_the_database_refuses_an_unknown_engine(store: Store) -> None:
    with pytest.raises(Conflict) as refused:  # the store reports every integrity error as a conflict
        await store.create_instance(id="x", name="X", webhook_url=None, webhook_events=[], webhook_secret=None,
                                    now=T0, engine="selenium")
    assert isinstance(refused.value.__cause__, IntegrityError)
    assert "engine_known" in str(refused.value.__cause__) or "engine IN" in str(refused.value.__cause__)
    assert await store.get_instance("x") is None


@pytest.mark.parametrize("default", ["sandbox", "whatsmeow"])
async def test_instances_from_before_the_engine_column_get_the_configured_default(tmp_path: Path,
                                                                                  default: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    old = SqlStore(url)
    async with old.engine.begin() as conn:  # the schema as main had it, with one instance in it
        await conn.run_sync(migrate.upgrade_connection, None, "0002")
        await conn.execute(sa.text("INSERT INTO instances (id, name, webhook_events, state, state_since, created_at) "
                                   "VALUES ('old', 'Old', '[]', 'ready', 1, 1)"))
    await old.close()
    upgraded = SqlStore(url, default_engine=default)
    try:
        await upgraded.migrate()
        rec = await upgraded.get_instance("old")
        assert rec is not None and rec.engine == default
        assert await upgraded.get_cloud_credentials("old") is None
    finally:
        await upgraded.close()
