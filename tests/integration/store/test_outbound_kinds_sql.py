"""The database itself refuses an item kind it does not know (SQL stores only: the check is in the schema)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.integration.store.conftest import IMPLEMENTATIONS
from wahub.store.base import Store

pytestmark = pytest.mark.parametrize("fresh_store", [p for p in IMPLEMENTATIONS if p.id != "memory"], indirect=True)


async def test_the_database_refuses_a_kind_it_does_not_know(store: Store) -> None:
    engine = getattr(store, "engine", None)
    assert engine is not None
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
                "fingerprint, status, attempts, next_attempt_at, created_at, updated_at) VALUES "
                "('qx', 'a', 'kx', 'header', 'carrier', 'c', '{}', 'f', 'queued', 0, 0, 0, 0)"))
