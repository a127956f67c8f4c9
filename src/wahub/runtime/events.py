"""The webhook event catalogue: which events exist and how one becomes a stored, signed draft.

Drafts are built here and stored by whichever room records the change they report (in the same
transaction), then :meth:`Events.notify` wakes the dispatcher for the instance.

Shapes kept from the existing wa-hub (docs/compatibility.md): ``authenticated``, ``ready`` and
``ready_timeout`` are delivered whatever ``webhook.events`` says (:data:`ALWAYS_SENT`);
``change_state.status`` carries a whatsapp-web.js state (:func:`wa_state`, ours is in ``state``);
``restricted`` carries ``restrictedUntil`` as an ISO string (:func:`restricted_data`).
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import segno

from wahub.domain import chatid
from wahub.domain.clock import Clock
from wahub.domain.lifecycle import State
from wahub.domain.outbox import OutboxItem
from wahub.runtime import signing
from wahub.store.base import EventsPort
from wahub.store.records import EventDraft, InstanceRecord

WEBHOOK_EVENTS = ("qr", "authenticated", "ready", "disconnected", "change_state", "auth_failure", "restricted",
                  "message", "vote_update", "message_ack", "message_sent", "message_failed", "message_uncertain",
                  "message_reaction", "message_edit", "message_revoke", "ready_timeout",
                  "degraded")
# Delivered whatever an instance's event filter says: the existing wa-hub always sent these.
ALWAYS_SENT = frozenset({"authenticated", "ready", "ready_timeout"})

# ``change_state.status``: the whatsapp-web.js state (WAState) the existing wa-hub forwarded for each
# of ours. A QR on screen is UNPAIRED (the phone is not linked), as are needs_qr and logged_out;
# a lost connection is TIMEOUT; a ban is TOS_BLOCK; an engine that is not running is UNLAUNCHED.
WA_STATES: dict[State, str] = {
    State.INITIALIZING: "OPENING", State.CONNECTING: "OPENING", State.NEEDS_QR: "UNPAIRED",
    State.LOGGED_OUT: "UNPAIRED", State.READY: "CONNECTED", State.DISCONNECTED: "TIMEOUT",
    State.RESTRICTED: "TOS_BLOCK", State.ERROR: "UNLAUNCHED", State.STOPPED: "UNLAUNCHED",
}


def wa_state(state: State, has_qr: bool) -> str:
    """The whatsapp-web.js state for ``change_state.status`` (``UNPAIRED`` while a QR is shown)."""
    if has_qr and state in (State.INITIALIZING, State.CONNECTING):
        return "UNPAIRED"
    return WA_STATES[state]


def iso(ms: int | None) -> str | None:
    """Epoch ms as an ISO-8601 UTC string (``2026-01-01T00:00:00.000Z``), as Node's ``toISOString``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def restricted_data(code: str, until_ms: int | None) -> dict[str, Any]:
    """``restricted`` data: ``restrictedUntil`` ISO (or null), ``restrictedUntilMs`` epoch ms, a ``message``."""
    until = iso(until_ms)
    message = (f"WhatsApp restricted this account temporarily (code {code}) until {until}" if until else
               f"WhatsApp restricted this account temporarily (code {code}); no end time was given")
    return {"reason": f"temporary ban (code {code})", "code": code, "restrictedUntil": until,
            "restrictedUntilMs": until_ms, "message": message}


class Events:
    """Builds event drafts for an instance's webhook settings and stores stand-alone ones."""

    def __init__(self, store: EventsPort, clock: Clock, notify: Callable[[str], None]) -> None:
        self.store = store
        self.clock = clock
        self.notify = notify
        self._authenticated_at: dict[str, int] = {}

    def drafts(self, rec: InstanceRecord, event: str, data: dict[str, Any]) -> list[EventDraft]:
        """The event as a stored draft, or [] when the instance has no URL or filters it out
        (events in :data:`ALWAYS_SENT` pass every filter)."""
        if not self.wants(rec, event):
            return []
        body = signing.serialize({"event": event, "instanceId": rec.id, "data": data})
        return [EventDraft(event_id="evt_" + uuid.uuid4().hex, instance_id=rec.id, event=event, body=body)]

    @staticmethod
    def wants(rec: InstanceRecord, event: str) -> bool:
        """True when ``event`` would be stored for the instance (it has a URL and does not filter it out)."""
        if not rec.webhook_url:
            return False
        return not rec.webhook_events or event in rec.webhook_events or event in ALWAYS_SENT

    async def emit(self, rec: InstanceRecord, event: str, data: dict[str, Any]) -> None:
        """Store an event that is not part of another change, then wake the dispatcher."""
        await self.store_drafts(rec.id, self.drafts(rec, event, data))

    async def authenticated(self, rec: InstanceRecord) -> None:
        """The phone authenticated the session: note when (for ``ready_timeout``) and emit ``authenticated``."""
        self._authenticated_at[rec.id] = self.clock.now_ms()
        await self.emit(rec, "authenticated", {})

    def authenticated_at(self, instance_id: str) -> int | None:
        """When the instance last authenticated in this process (epoch ms), or None."""
        return self._authenticated_at.get(instance_id)

    async def ready_timeout(self, rec: InstanceRecord, state: State) -> None:
        """Emit ``ready_timeout {elapsedMs, authenticatedAt (ISO), state}``: authenticated, never ready."""
        at = self._authenticated_at.get(rec.id)
        elapsed = self.clock.now_ms() - at if at is not None else 0
        await self.emit(rec, "ready_timeout", {"elapsedMs": elapsed, "authenticatedAt": iso(at),
                                               "state": state.value})

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
