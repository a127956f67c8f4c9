"""Every item kind of the send actions is stored and sent on every store; an unknown kind is refused by SQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.integration.store.conftest import IMPLEMENTATIONS, T0, enqueue, send
from wahub.domain.outbox import ItemKind, ItemStatus
from wahub.store.base import Store

pytestmark = pytest.mark.parametrize("fresh_store", IMPLEMENTATIONS, indirect=True)

PAYLOADS = {
    ItemKind.MEDIA: {"mediaType": "image", "mimetype": "image/jpeg", "data": "/9j/4A==", "size": 4},
    ItemKind.LOCATION: {"latitude": 30.0, "longitude": 31.0, "name": "Pick-up"},
    ItemKind.VCARD: {"vcard": "BEGIN:VCARD\nEND:VCARD", "displayName": "Support"},
    ItemKind.REACTION: {"messageId": "3EB0A", "fromMe": True, "reaction": "👍"},
    ItemKind.EDIT: {"messageId": "3EB0A", "fromMe": True, "message": "new"},
    ItemKind.REVOKE: {"messageId": "3EB0A", "fromMe": True},
    ItemKind.FORWARD: {"messageId": "3EB0A", "sourceKind": "text", "content": {"message": "hi"}},
}


async def test_each_new_kind_is_stored_claimed_and_sent(store: Store) -> None:
    for n, (kind, payload) in enumerate(PAYLOADS.items()):
        item, created, _ = await enqueue(store, f"k{n}", kind=kind.value, payload=payload)
        assert created and item.kind == kind and item.payload == payload
        claimed = await store.claim_next("a", T0 + n)
        assert claimed is not None and claimed.queue_id == item.queue_id
        await send(store, claimed, f"3EB0{n}", T0 + n)
        fetched = await store.get_item(item.queue_id)
        assert fetched is not None and fetched.status == ItemStatus.SENT and fetched.kind == kind
    assert (await store.get_item_by_message_id("a", "3EB00")) is not None


async def test_the_database_refuses_a_kind_it_does_not_know(store: Store) -> None:
    engine = getattr(store, "engine", None)
    if engine is None:
        pytest.skip("the memory fake has no schema")
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO outbox (queue_id, instance_id, idempotency_key, key_source, kind, chat_id, payload, "
                "fingerprint, status, attempts, next_attempt_at, created_at, updated_at) VALUES "
                "('qx', 'a', 'kx', 'header', 'carrier', 'c', '{}', 'f', 'queued', 0, 0, 0, 0)"))
