"""The admin port (migrate, ping, purge) and composition, on every implementation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import make_settings
from tests.integration.store.conftest import IMPLEMENTATIONS, TABLES
from wahub.domain.outbox import ItemKind
from wahub.runtime.compose import build_hub
from wahub.store.base import Store
from wahub.store.sql import SqlStore

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)


# -- schema ----------------------------------------------------------------------------------------------
async def test_migrate_brings_an_empty_database_to_the_newest_revision(fresh_store: Store) -> None:
    if isinstance(fresh_store, SqlStore):
        async with fresh_store.engine.connect() as conn:
            before = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert before == set()
    await fresh_store.migrate()
    await fresh_store.migrate()  # idempotent: a second start changes nothing
    assert await fresh_store.ping() is True
    if isinstance(fresh_store, SqlStore):
        async with fresh_store.engine.connect() as conn:
            after = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            revision = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert after == TABLES | ({"outbox_open"} if fresh_store.is_sqlite else set())  # migration 0010 (SQLite only)
        assert revision == "0011"
    assert await fresh_store.list_instances() == []


# -- composition -----------------------------------------------------------------------------------------
async def test_a_hub_runs_on_the_store_it_is_given(fresh_store: Store, tmp_path: Path) -> None:
    hub = build_hub(make_settings(tmp_path), store=fresh_store, rng=random.Random(7))
    assert hub.store is fresh_store
    await hub.start(restore=False)
    try:
        rt = await hub.create_instance("WASP-shop.myshopify.com", None, None)
        body = {"chatId": "+20 100 000 0001", "message": "order #1 confirmed"}
        first = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, body, header_key="order:1")
        again = await hub.outbox.enqueue(rt.id, ItemKind.TEXT, body, header_key="order:1")
        assert (first.replay, again.replay) == (False, True)
        assert again.item.queue_id == first.item.queue_id
        stored = await fresh_store.find_item_by_key(rt.id, "order:1")
        assert stored is not None and stored.queue_id == first.item.queue_id
        assert [r.id for r in await fresh_store.list_instances()] == ["WASP-shop_myshopify_com"]
    finally:
        await hub.stop()
