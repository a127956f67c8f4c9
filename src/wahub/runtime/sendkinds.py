"""One outbox item → the engine call that sends it, by item kind.

The send loop calls :func:`send_item` at the send instant; everything here is synchronous
argument mapping from the stored payload (no I/O before the engine call). An engine that cannot
do a kind raises ``EngineUnsupported``, which is mapped to a permanent failure: retrying it
would never succeed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from wahub.domain.errors import PermanentSendError
from wahub.domain.outbox import ItemKind, OutboxItem
from wahub.engines import base as eng


def media_of(payload: Mapping[str, Any], *, forwarded: bool = False) -> eng.Media:
    """The :class:`~wahub.engines.base.Media` of a stored media payload."""
    return eng.Media(media_type=str(payload["mediaType"]), mimetype=str(payload["mimetype"]),
                     data=base64.b64decode(payload["data"]), caption=payload.get("caption"),
                     filename=payload.get("filename"), forwarded=forwarded)


def location_of(payload: Mapping[str, Any], *, forwarded: bool = False) -> eng.Location:
    """The :class:`~wahub.engines.base.Location` of a stored location payload."""
    return eng.Location(latitude=float(payload["latitude"]), longitude=float(payload["longitude"]),
                        name=payload.get("name"), address=payload.get("address"), url=payload.get("url"),
                        forwarded=forwarded)


def target_of(payload: Mapping[str, Any]) -> eng.MessageRef:
    """The message a reaction, edit or revoke acts on."""
    return eng.MessageRef(str(payload["messageId"]), bool(payload.get("fromMe")), payload.get("participant"))


async def send_item(engine: eng.Engine, item: OutboxItem, chat: str, message_id: str | None) -> eng.SendResult:
    """Hand ``item`` to ``engine`` for ``chat`` (its chat id as resolved for WhatsApp) under ``message_id``.

    Raises the ``SendError`` family; ``EngineUnsupported`` becomes ``PermanentSendError(reason="unsupported")``.
    """
    p = item.payload
    try:
        if item.kind == ItemKind.TEXT:
            return await engine.send_text(chat, p["message"], message_id=message_id)
        if item.kind == ItemKind.POLL:
            return await engine.send_poll(chat, p["caption"], list(p["options"]), bool(p.get("multipleAnswers")),
                                          message_id=message_id, template=p.get("template"))
        if item.kind == ItemKind.MEDIA:
            return await engine.send_media(chat, media_of(p), message_id=message_id)
        if item.kind == ItemKind.LOCATION:
            return await engine.send_location(chat, location_of(p), message_id=message_id)
        if item.kind == ItemKind.VCARD:
            return await engine.send_vcard(chat, p["vcard"], p["displayName"], message_id=message_id)
        if item.kind == ItemKind.REACTION:
            return await engine.send_reaction(chat, target_of(p), p["reaction"], message_id=message_id)
        if item.kind == ItemKind.EDIT:
            return await engine.send_edit(chat, target_of(p), p["message"], message_id=message_id)
        if item.kind == ItemKind.REVOKE:
            return await engine.send_revoke(chat, target_of(p), message_id=message_id)
        if item.kind == ItemKind.FORWARD:
            return await engine.send_forward(chat, str(p["sourceKind"]), dict(p["content"]), message_id=message_id)
    except eng.EngineUnsupported as exc:
        raise PermanentSendError(str(exc), reason="unsupported") from exc
    raise PermanentSendError(f"unknown item kind {item.kind.value}", reason="unsupported")
