"""Controls of the sandbox engine: scan the QR, inject messages/votes/acks, script faults."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from wahub.api.auth import require_key
from wahub.api.waapi import check_text, hub_of, ok
from wahub.domain import chatid
from wahub.domain.errors import InvalidInput, NotFound
from wahub.runtime.sandboxport import SandboxControl

router = APIRouter(prefix="/sandbox", dependencies=[Depends(require_key)], tags=["sandbox"])


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    import json

    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    check_text(data, "")
    return data


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
    data = await _body(request)
    phone = data.get("phone")
    if phone is not None:
        phone = chatid.phone_number(chatid.normalize(phone, field="phone"))
    if data.get("pushName") is not None and not isinstance(data["pushName"], str):
        raise InvalidInput("pushName must be a string")
    await world.scan(iid, phone=phone, push_name=data.get("pushName"))
    return ok({"scanned": True, "instanceId": iid})


@router.post("/instances/{instance_id}/messages", summary="Inject an inbound text message")
async def inject_message(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await _body(request)
    sender = chatid.normalize(data.get("from"), field="from")
    text = data.get("text")
    if not isinstance(text, str):
        raise InvalidInput("text is required (a string)")
    if data.get("messageId") is not None and not isinstance(data["messageId"], str):
        raise InvalidInput("messageId must be a string")
    mid = await world.inject_message(iid, sender, text, message_id=data.get("messageId"),
                                     sender_alt=_optional_chat(data, "fromAlt"))
    return ok({"messageId": mid})


@router.post("/instances/{instance_id}/votes", summary="Inject a poll vote")
async def inject_vote(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await _body(request)
    poll_id = data.get("pollMessageId")
    if not isinstance(poll_id, str) or not poll_id:
        raise InvalidInput("pollMessageId is required")
    voter = chatid.normalize(data.get("voter"), field="voter")
    selected = data.get("selectedOptions")
    if not isinstance(selected, list) or not all(isinstance(s, str) for s in selected):
        raise InvalidInput("selectedOptions must be a list of option names ([] retracts the vote)")
    ts = data.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise InvalidInput("timestamp must be epoch milliseconds")
    if not isinstance(data.get("asHashes", False), bool):
        raise InvalidInput("asHashes must be true or false")
    await world.inject_vote(iid, poll_id, voter, selected, timestamp=ts,
                            voter_alt=_optional_chat(data, "voterAlt"), as_hashes=bool(data.get("asHashes")))
    return ok({"injected": True})


@router.post("/instances/{instance_id}/acks", summary="Inject a receipt for sent messages")
async def inject_ack(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await _body(request)
    ids = data.get("messageIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("messageIds must be a non-empty list of message ids")
    await world.inject_ack(iid, ids, str(data.get("ack")))
    return ok({"injected": True})


@router.post("/instances/{instance_id}/faults", summary="Script a fault (see the sandbox docs)")
async def fault(request: Request, instance_id: str) -> JSONResponse:
    world, iid = _world(request, instance_id)
    data = await _body(request)
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
