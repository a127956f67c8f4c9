"""Every item kind of the send actions is stored and sent on every store; an unknown kind is refused by SQL."""

from __future__ import annotations

import pytest

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
