"""``GET /health`` is liveness only; ``GET /ready`` answers 503 while the store cannot be reached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import HubClient
from wahub.api import native


def _db_file(hc: HubClient) -> Path:
    return Path(hc.hub.settings.data_dir) / "wa-hub.sqlite3"


async def test_ready_when_the_store_answers(hub_client: HubClient) -> None:
    r = await hub_client.client.get("/ready", headers={"authorization": ""})
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "store": True, "engines": True}


async def test_ready_is_503_while_the_database_file_cannot_be_opened(hub_client: HubClient) -> None:
    db = _db_file(hub_client)
    assert db.is_file()
    await hub_client.hub.store.engine.dispose()  # drop the pooled connection: the next one must open the file
    moved = db.with_name(db.name + ".moved")
    os.rename(db, moved)
    os.mkdir(db)  # a directory where the database file was: SQLite cannot open it
    try:
        r = await hub_client.client.get("/ready")
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "store": False, "engines": True}
        health = await hub_client.client.get("/health")
        assert health.status_code == 200  # liveness does not depend on the store
    finally:
        os.rmdir(db)
        os.rename(moved, db)
    r = await hub_client.client.get("/ready")
    assert r.status_code == 200


async def test_ready_is_503_when_the_store_does_not_answer_in_time(hub_client: HubClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "READY_STORE_TIMEOUT_S", 0.3)
    # The SQLite pool has one connection; holding it makes the ping wait like a hung server would.
    async with hub_client.hub.store.engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
        r = await hub_client.client.get("/ready")
        assert r.status_code == 503
        assert r.json()["store"] is False
    r = await hub_client.client.get("/ready")
    assert r.status_code == 200
