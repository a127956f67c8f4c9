"""Pure reading of a WhatsApp ``Message`` protobuf (``waE2E``): what kind it is and what it carries.

Used by :mod:`~wahub.engines.whatsmeow.adapter` to build
:class:`~wahub.engines.base.InboundMessage` fields. Kinds follow whatsapp-web.js ``type`` names
(what WaAPI clients switch on): ``chat``, ``image``, ``video``, ``audio``, ``ptt`` (voice note),
``document``, ``sticker``, ``vcard``, ``multi_vcard``, ``location``. Media bytes are never
touched here: ``has_media`` says there is something to download.

Wrappers WhatsApp puts around content (ephemeral, view-once, document-with-caption, edited,
device-sent) are peeled first (:func:`unwrap`); whatsmeow peels most of them already, but not
every version peels every one.
"""

from __future__ import annotations

from typing import Any

WRAPPERS = ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension",
            "documentWithCaptionMessage", "editedMessage", "deviceSentMessage")
# The content sub-message of each kind, checked in this order (first present wins).
MEDIA_FIELDS = (("imageMessage", "image"), ("videoMessage", "video"), ("audioMessage", "audio"),
                ("documentMessage", "document"), ("stickerMessage", "sticker"))


def unwrap(message: Any) -> Any:
    """The innermost ``Message`` under the wrappers (at most 4 levels)."""
    for _ in range(4):
        for name in WRAPPERS:
            if message.HasField(name):
                message = getattr(message, name).message
                break
        else:
            return message
    return message


def text_of(message: Any) -> str | None:
    """The text of a message: conversation, extended text, or a media caption; None when it has none."""
    message = unwrap(message)
    if message.HasField("extendedTextMessage"):
        return str(message.extendedTextMessage.text)
    if message.HasField("conversation"):
        return str(message.conversation)
    for name in ("imageMessage", "videoMessage", "documentMessage"):
        if message.HasField(name) and getattr(message, name).caption:
            return str(getattr(message, name).caption)
    return None


def context_of(message: Any) -> Any | None:
    """The ``ContextInfo`` of the content sub-message (quoted reply, mentions), None when absent."""
    for field in message.ListFields():
        sub = field[1]
        if hasattr(sub, "HasField") and field[0].message_type is not None:
            try:
                if sub.HasField("contextInfo"):
                    return sub.contextInfo
            except ValueError:  # this sub-message has no contextInfo field
                continue
    return None


def describe(message: Any) -> dict[str, Any] | None:
    """``InboundMessage`` content fields (``kind``, ``text``, ``mimetype``…) for a user message.

    None for what is not a user-visible message (protocol messages, reactions, poll updates, sender
    key distribution only) and for content wa-hub does not map yet.
    """
    message = unwrap(message)
    if message.HasField("extendedTextMessage") or message.HasField("conversation"):
        return {"kind": "chat", "text": text_of(message) or ""}
    for field, kind in MEDIA_FIELDS:
        if message.HasField(field):
            media = getattr(message, field)
            if kind == "audio" and media.PTT:
                kind = "ptt"
            caption = str(media.caption) if field != "audioMessage" and field != "stickerMessage" \
                and media.caption else None
            fields: dict[str, Any] = {"kind": kind, "text": caption or "", "has_media": True,
                                      "mimetype": str(media.mimetype) or None, "caption": caption}
            if kind == "document":
                fields["filename"] = str(media.fileName or media.title) or None
            return fields
    if message.HasField("contactMessage"):
        card = str(message.contactMessage.vcard)
        return {"kind": "vcard", "text": card, "vcards": (card,)}
    if message.HasField("contactsArrayMessage"):
        cards = tuple(str(c.vcard) for c in message.contactsArrayMessage.contacts)
        return {"kind": "multi_vcard", "text": "", "vcards": cards}
    for field in ("locationMessage", "liveLocationMessage"):
        if message.HasField(field):
            loc = getattr(message, field)
            return {"kind": "location", "text": str(getattr(loc, "comment", "") or getattr(loc, "caption", "")),
                    "latitude": float(loc.degreesLatitude), "longitude": float(loc.degreesLongitude),
                    "location_name": str(getattr(loc, "name", "")) or None,
                    "location_address": str(getattr(loc, "address", "")) or None}
    return None


def quoted(message: Any) -> dict[str, Any]:
    """``quoted_message_id`` / ``quoted_body`` / ``quoted_participant`` of a reply ({} when it is none)."""
    ctx = context_of(unwrap(message))
    if ctx is None or not ctx.stanzaID:
        return {}
    body = text_of(ctx.quotedMessage) if ctx.HasField("quotedMessage") else None
    return {"quoted_message_id": str(ctx.stanzaID), "quoted_body": body,
            "quoted_participant": str(ctx.participant) or None}


def present_fields(message: Any) -> list[str]:
    """Names of the fields set on a message (for a log line about an unmapped kind; never values)."""
    return [f.name for f, _ in unwrap(message).ListFields()]
