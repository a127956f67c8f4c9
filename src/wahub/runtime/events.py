"""The webhook event catalogue: which events exist and how one becomes a stored, signed draft.

Drafts are built here and stored by whichever room records the change they report (in the same
transaction), then :meth:`Events.notify` wakes the dispatcher for the instance.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Callable
from typing import Any

import segno

from wahub.domain import chatid
from wahub.domain.clock import Clock
from wahub.domain.outbox import OutboxItem
from wahub.runtime import signing
from wahub.store.base import EventsPort
from wahub.store.records import EventDraft, InstanceRecord

WEBHOOK_EVENTS = ("qr", "authenticated", "ready", "disconnected", "change_state", "auth_failure", "restricted",
                  "message", "vote_update", "message_ack", "message_sent", "message_failed", "message_uncertain",
                  "degraded")


class Events:
    """Builds event drafts for an instance's webhook settings and stores stand-alone ones."""

    def __init__(self, store: EventsPort, clock: Clock, notify: Callable[[str], None]) -> None:
        self.store = store
        self.clock = clock
        self.notify = notify

    def drafts(self, rec: InstanceRecord, event: str, data: dict[str, Any]) -> list[EventDraft]:
        """The event as a stored draft, or [] when the instance has no URL or filters it out."""
        if not rec.webhook_url:
            return []
        if rec.webhook_events and event not in rec.webhook_events:
            return []
        body = signing.serialize({"event": event, "instanceId": rec.id, "data": data})
        return [EventDraft(event_id="evt_" + uuid.uuid4().hex, instance_id=rec.id, event=event, body=body)]

    async def emit(self, rec: InstanceRecord, event: str, data: dict[str, Any]) -> None:
        """Store an event that is not part of another change, then wake the dispatcher."""
        await self.store_drafts(rec.id, self.drafts(rec, event, data))

    async def store_drafts(self, instance_id: str, drafts: list[EventDraft]) -> None:
        """Store already built drafts (if any) and wake the dispatcher."""
        if drafts:
            await self.store.add_events(drafts, self.clock.now_ms())
            self.notify(instance_id)


def item_ref(item: OutboxItem) -> dict[str, Any]:
    """The fields every outbox event carries to name its item."""
    return {"queueId": item.queue_id, "idempotencyKey": item.idempotency_key, "chatId": item.chat_id,
            "kind": item.kind.value}


def short(jid: str) -> str:
    """wa-hub's historic voter/sender form: bare digits for people, the full id otherwise."""
    return chatid.phone_number(jid) or jid


def qr_png_b64(code: str) -> str:
    """The QR string rendered as a base64 PNG (no ``data:`` prefix, as wa-hub always sent it)."""
    buf = io.BytesIO()
    segno.make(code, error="l").save(buf, kind="png", scale=6, border=2)
    return base64.b64encode(buf.getvalue()).decode("ascii")
