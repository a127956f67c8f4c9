"""Fixtures of the store contract suites: every port's suite runs on SQLite, PostgreSQL and the in-memory fake.

PostgreSQL runs when ``WAHUB_TEST_PG_URL`` names a server (``scripts/pg-start`` prints one);
each test gets a database of its own, created empty and dropped afterwards.
Times are plain epoch-ms integers: the store never reads a clock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wahub.domain.outbox import OutboxItem
from wahub.store.base import Store
from wahub.store.memory import MemoryStore
from wahub.store.records import EventDraft
from wahub.store.sql import SqlStore

PG_URL = os.environ.get("WAHUB_TEST_PG_URL")
T0 = 1_700_000_000_000
TABLES = {"instances", "outbox", "outbox_retired", "send_log", "webhook_events", "polls", "votes", "inbound_seen",
          "identities", "number_ids", "transitions", "restarts", "cloud_credentials", "cloud_chat_inbound",
          "alembic_version"}

_: type[Store] = MemoryStore  # both implementations satisfy the protocol (checked by mypy)
__: type[Store] = SqlStore


def _asyncpg_url(url: str, database: str) -> str:
    base = url.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base}/{database}"


@pytest.fixture
async def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An implementation over an empty database (not migrated yet)."""
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
        return
    if kind == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'contract.sqlite3'}")
        try:
            yield store
        finally:
            await store.close()
        return
    if not PG_URL:
        if os.environ.get("CI"):  # .ci/run starts PostgreSQL: without it the suite must not pass quietly
            pytest.fail("CI without WAHUB_TEST_PG_URL", pytrace=False)
        pytest.skip("WAHUB_TEST_PG_URL is not set (start a server with scripts/pg-start and export its URL)")
    import asyncpg

    database = f"wahub_contract_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    store = SqlStore(_asyncpg_url(PG_URL, database))
    try:
        yield store
    finally:
        await store.close()
        admin = await asyncpg.connect(PG_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def store(fresh_store: Store) -> Store:
    """A migrated store with one instance ``a`` and one instance ``b``."""
    await fresh_store.migrate()
    await fresh_store.create_instance(id="a", name="A", webhook_url=None, webhook_events=[],
                                      webhook_secret=None, now=T0)
    await fresh_store.create_instance(id="b", name="B", webhook_url=None, webhook_events=[],
                                      webhook_secret=None, now=T0 + 1)
    return fresh_store


IMPLEMENTATIONS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("memory", id="memory"),
]


async def enqueue(store: Store, key: str, *, instance: str = "a", now: int = T0, max_open: int = 100,
                  kind: str = "text", payload: dict[str, Any] | None = None) -> tuple[OutboxItem, bool, int]:
    """Insert an item under ``key`` with a fresh queue id."""
    payload = payload if payload is not None else {"message": f"body of {key}"}
    return await store.insert_item(queue_id="q_" + uuid.uuid4().hex, instance_id=instance,
                                   idempotency_key=key, key_source="header", kind=kind,
                                   chat_id="201000000001@c.us", payload=payload, fingerprint="f" * 64,
                                   now=now, max_open=max_open)


def draft(instance: str, event: str = "message_sent", body: str = "{}") -> EventDraft:
    """A webhook event with a unique id."""
    return EventDraft(event_id="evt_" + uuid.uuid4().hex, instance_id=instance, event=event, body=body)


async def send(store: Store, item: OutboxItem, message_id: str, now: int) -> None:
    """Hand the item over and record it sent."""
    await store.mark_handed_over(item, now)
    await store.mark_sent(item, message_id=message_id, now=now)
