"""The ``data`` of inbound webhook events, in the shapes WaAPI / whatsapp-web.js clients read.

Pure builders: engine event in, JSON-ready dict out (see ``docs/webhooks.md`` for every field).
Times: ``timestamp`` is epoch **seconds** (the whatsapp-web.js / existing wa-hub shape),
``timestampMs`` the same instant in ms. ``fromAlt`` is the person's other id (the phone behind an
``@lid``, or the ``@lid`` of a phone) when wa-hub knows it, else None.
"""

from __future__ import annotations

from typing import Any

from wahub.engines import base as eng
from wahub.runtime.events import short

MESSAGE_TYPES = eng.INBOUND_KINDS
"""The ``type`` values of a ``message`` event (whatsapp-web.js names)."""


def _who(sender: str, alt: str | None, chat_id: str, timestamp: int) -> dict[str, Any]:
    return {"from": short(sender), "fromId": sender, "fromAlt": alt, "chatId": chat_id,
            "timestamp": timestamp // 1000, "timestampMs": timestamp}


def message(ev: eng.InboundMessage, alt: str | None) -> dict[str, Any]:
    """``message``: any kind a customer can send (text, media, contacts, location), with its reply context."""
    location = None
    if ev.latitude is not None and ev.longitude is not None:
        location = {"latitude": ev.latitude, "longitude": ev.longitude, "name": ev.location_name,
                    "address": ev.location_address}
    return {"message": {
        **_who(ev.sender, alt, ev.chat_id, ev.timestamp),
        "id": ev.message_id, "body": ev.text, "text": ev.text, "type": ev.kind, "fromMe": False,
        "pushName": ev.push_name, "hasMedia": ev.has_media, "mimetype": ev.mimetype, "caption": ev.caption,
        "filename": ev.filename, "location": location, "vCards": list(ev.vcards),
        "hasQuotedMsg": ev.quoted_message_id is not None, "quotedMsgId": ev.quoted_message_id,
        "quotedMsgBody": ev.quoted_body, "quotedParticipant": ev.quoted_participant}}


def reaction(ev: eng.Reaction, alt: str | None) -> dict[str, Any]:
    """``message_reaction``: ``reaction`` is the emoji, "" when the sender removed their reaction."""
    return {"reaction": {**_who(ev.sender, alt, ev.chat_id, ev.timestamp), "id": ev.message_id,
                         "msgId": ev.target_message_id, "reaction": ev.emoji, "removed": ev.emoji == "",
                         "senderId": ev.sender}}


def edit(ev: eng.MessageEdit, alt: str | None) -> dict[str, Any]:
    """``message_edit``: ``newBody`` is the message's text now; ``originalMessageId`` the edited message."""
    return {"originalMessageId": ev.original_message_id, "newBody": ev.text,
            "message": {**_who(ev.sender, alt, ev.chat_id, ev.timestamp), "id": ev.original_message_id,
                        "body": ev.text, "text": ev.text, "fromMe": False}}


def revoke(ev: eng.MessageRevoke, alt: str | None) -> dict[str, Any]:
    """``message_revoke``: ``originalMessageId`` was deleted for everyone by its sender."""
    return {"originalMessageId": ev.original_message_id,
            "message": {**_who(ev.sender, alt, ev.chat_id, ev.timestamp), "id": ev.original_message_id,
                        "type": "revoked", "fromMe": False}}
