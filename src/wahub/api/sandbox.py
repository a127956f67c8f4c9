"""Controls of the sandbox engine: scan the QR, inject every inbound kind (messages, reactions, edits,
deletes, votes, acks), script faults."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from wahub.api import schemas
from wahub.api.auth import require_key
from wahub.api.waapi import body_of, hub_of, ok
from wahub.domain import chatid
from wahub.domain.errors import InvalidInput, NotFound
from wahub.runtime.inboundshapes import MESSAGE_TYPES
from wahub.runtime.sandboxport import SandboxControl

router = APIRouter(prefix="/sandbox", dependencies=[Depends(require_key)], tags=["sandbox"])


def _optional_chat(data: dict[str, Any], name: str) -> str | None:
    """An optional chat id field in canonical form (engines speak only canonical ids)."""
    value = data.get(name)
    return None if value is None else chatid.normalize(value, field=name)


def _world(request: Request, instance_id: str) -> tuple[SandboxControl, str]:
    hub = hub_of(request)
    if hub.sandbox is None:
        raise NotFound("the sandbox engine is not in use (WAHUB_ENGINE=sandbox enables it)")
    return hub.sandbox, hub.get(instance_id).id


@router.post("/instances/{instance_id}/scan", summary="Scan the current QR with a simulated phone")
async def scan(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    phone = data.get("phone")
    if phone is not None:
        phone = chatid.phone_number(chatid.normalize(phone, field="phone"))
    if data.get("pushName") is not None and not isinstance(data["pushName"], str):
        raise InvalidInput("pushName must be a string")
    await world.scan(iid, phone=phone, push_name=data.get("pushName"))
    return ok({"scanned": True, "instanceId": iid})


def _required(data: dict[str, Any], name: str) -> str:
    """A required, non-empty string field; InvalidInput naming it otherwise."""
    value = _str(data, name, required=True)
    assert value is not None  # _str raised otherwise
    return value


def _str(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """An optional (or required) string field; InvalidInput naming it otherwise."""
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"{name} is required (a string)" if required else f"{name} must be a string")
    return value


def _content(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """The ``InboundMessage`` fields of a message of ``kind`` from the request (whatsapp-web.js names)."""
    content: dict[str, Any] = {"kind": kind}
    for field, name in (("caption", "caption"), ("mimetype", "mimetype"), ("filename", "filename"),
                        ("quoted_message_id", "quotedMsgId"), ("quoted_body", "quotedMsgBody")):
        value = _str(data, name)
        if value is not None:
            content[field] = value
    if data.get("quotedParticipant") is not None:
        content["quoted_participant"] = chatid.normalize(data["quotedParticipant"], field="quotedParticipant")
    if "hasMedia" in data:
        if not isinstance(data["hasMedia"], bool):
            raise InvalidInput("hasMedia must be true or false")
        content["has_media"] = data["hasMedia"]
    if data.get("mediaBase64") is not None:  # the file download-media answers for this message
        try:
            content["media"] = base64.b64decode(str(data["mediaBase64"]), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("mediaBase64 is not valid base64") from None
    if kind == "location" or data.get("location") is not None:  # checked whenever given, used for locations
        location = _location(data.get("location"))
        if kind == "location":
            content.update(location)
    vcards = data.get("vCards")
    if kind in ("vcard", "multi_vcard") or vcards is not None:
        if not isinstance(vcards, list) or not vcards or not all(isinstance(v, str) and v for v in vcards):
            raise InvalidInput("vCards must be a non-empty list of vCard texts")
        content["vcards"] = tuple(vcards)
    return content


def _location(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput("location is required for type location: {latitude, longitude, name?, address?}")
    out: dict[str, Any] = {}
    for name, bound in (("latitude", 90), ("longitude", 180)):
        number = value.get(name)
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not -bound <= number <= bound:
            raise InvalidInput(f"location.{name} must be a number from -{bound} to {bound}")
        out[name] = float(number)
    for name, field in (("name", "location_name"), ("address", "location_address")):
        if value.get(name) is not None:
            if not isinstance(value[name], str):
                raise InvalidInput(f"location.{name} must be a string")
            out[field] = value[name]
    return out


@router.post("/instances/{instance_id}/messages", summary="Inject an inbound message of any kind")
async def inject_message(request: Request, instance_id: str,
                         body: schemas.SandboxMessage | None = None) -> JSONResponse:
    """``type`` (default ``chat``) is a whatsapp-web.js message type; ``text`` is required for ``chat``.

    Media kinds take ``caption``, ``mimetype``, ``filename`` (``hasMedia`` defaults to true);
    ``location`` takes ``location{latitude, longitude, name, address}``; ``vcard`` and
    ``multi_vcard`` take ``vCards``; any kind may quote a message (``quotedMsgId``, ``quotedMsgBody``).
    A media kind's ``mediaBase64`` is the file ``download-media`` then answers for it.
    """
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    sender = chatid.normalize(data.get("from"), field="from")
    kind = data.get("type", "chat")
    if kind not in MESSAGE_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(MESSAGE_TYPES)}")
    text = data.get("text")
    if kind == "chat" and not isinstance(text, str):
        raise InvalidInput("text is required (a string)")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("text must be a string")
    content = _content(data, kind)
    if text is None:  # the body of media is its caption, of a contact card the card (whatsapp-web.js)
        text = content.get("caption") or (content["vcards"][0] if kind == "vcard" else "")
    mid = await world.inject_message(iid, sender, text, message_id=_str(data, "messageId"),
                                     sender_alt=_optional_chat(data, "fromAlt"),
                                     chat_id=_optional_chat(data, "chatId"), **content)
    return ok({"messageId": mid})


@router.post("/instances/{instance_id}/reactions", summary="Inject a reaction to a message")
async def inject_reaction(request: Request, instance_id: str,
                          body: schemas.SandboxReaction | None = None) -> JSONResponse:
    """``reaction`` is the emoji; ``""`` removes the sender's reaction from ``messageId``."""
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    sender = chatid.normalize(data.get("from"), field="from")
    target = _required(data, "messageId")
    emoji = data.get("reaction")
    if not isinstance(emoji, str) or len(emoji) > 32:
        raise InvalidInput('reaction must be an emoji ("" removes the reaction)')
    mid = await world.inject_reaction(iid, sender, target, emoji, chat_id=_optional_chat(data, "chatId"))
    return ok({"messageId": mid})


@router.post("/instances/{instance_id}/edits", summary="Inject an edit of an inbound message")
async def inject_edit(request: Request, instance_id: str, body: schemas.SandboxChange | None = None) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    sender = chatid.normalize(data.get("from"), field="from")
    original = _required(data, "messageId")
    text = _str(data, "text", required=True)
    assert original is not None and text is not None
    await world.inject_edit(iid, sender, original, text, chat_id=_optional_chat(data, "chatId"))
    return ok({"injected": True})


@router.post("/instances/{instance_id}/revokes", summary="Inject a delete-for-everyone of an inbound message")
async def inject_revoke(request: Request, instance_id: str,
                        body: schemas.SandboxChange | None = None) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    sender = chatid.normalize(data.get("from"), field="from")
    original = _required(data, "messageId")
    assert original is not None
    await world.inject_revoke(iid, sender, original, chat_id=_optional_chat(data, "chatId"))
    return ok({"injected": True})


@router.post("/instances/{instance_id}/votes", summary="Inject a poll vote (decryptFailed: one that cannot be read)")
async def inject_vote(request: Request, instance_id: str, body: schemas.SandboxVote | None = None) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    poll_id = data.get("pollMessageId")
    if not isinstance(poll_id, str) or not poll_id:
        raise InvalidInput("pollMessageId is required")
    voter = chatid.normalize(data.get("voter"), field="voter")
    decrypt_failed = data.get("decryptFailed", False)
    if not isinstance(decrypt_failed, bool):
        raise InvalidInput("decryptFailed must be true or false")
    selected = data.get("selectedOptions", [] if decrypt_failed else None)
    if not isinstance(selected, list) or not all(isinstance(s, str) for s in selected):
        raise InvalidInput("selectedOptions must be a list of option names ([] retracts the vote)")
    ts = data.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise InvalidInput("timestamp must be epoch milliseconds")
    if not isinstance(data.get("asHashes", False), bool):
        raise InvalidInput("asHashes must be true or false")
    await world.inject_vote(iid, poll_id, voter, selected, timestamp=ts,
                            voter_alt=_optional_chat(data, "voterAlt"), as_hashes=bool(data.get("asHashes")),
                            decrypt_failed=decrypt_failed)
    return ok({"injected": True})


@router.post("/instances/{instance_id}/acks", summary="Inject a receipt for sent messages")
async def inject_ack(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    ids = data.get("messageIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("messageIds must be a non-empty list of message ids")
    await world.inject_ack(iid, ids, str(data.get("ack")))
    return ok({"injected": True})


@router.post("/instances/{instance_id}/faults", summary="Script a fault (see the sandbox docs)")
async def fault(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await body_of(request)
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise InvalidInput("kind is required: disconnect, auth_failure, temporary_ban, send_error, "
                           "slow_send, drop_after_ready, never_ready, unregistered, clear")
    await world.fault(iid, kind, data)
    return ok({"fault": kind})


@router.get("/instances/{instance_id}/sent", summary="Messages that reached the simulated WhatsApp")
async def sent(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    return ok({"instanceId": iid, "messages": [d.as_dict() for d in world.phone(iid).deliveries]})
