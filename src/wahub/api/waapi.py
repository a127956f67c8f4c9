"""The WaAPI-compatible surface (what the existing wa-hub serves; DESIGN §5 table)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from wahub.api import legacy, schemas
from wahub.api.auth import require_key
from wahub.domain import chatid, lifecycle, sendsettings, webhookurl
from wahub.domain.errors import Conflict, InvalidInput, NotFound
from wahub.domain.outbox import EnqueueResult, ItemKind, ItemStatus
from wahub.edge import presenters
from wahub.runtime.hub import Hub
from wahub.runtime.registry import InstanceRuntime

router = APIRouter(dependencies=[Depends(require_key)], tags=["WaAPI-compatible"])


def hub_of(request: Request) -> Hub:
    """The hub serving this app."""
    hub: Hub = request.app.state.hub
    return hub


def ok(payload: dict[str, Any], status_code: int = 200) -> JSONResponse:
    """Success body: the payload with ``status: "success"`` (the existing wa-hub's envelope)."""
    return JSONResponse({**payload, "status": "success"}, status_code=status_code)


def instance_brief(rt: InstanceRuntime) -> dict[str, Any]:
    """``instance`` object of the existing wa-hub (+ state and webhook fields)."""
    return {"id": rt.id, "name": rt.record.name,
            "status": lifecycle.external_status(rt.state, rt.qr is not None), "state": rt.state.value,
            "phoneNumber": rt.phone, "webhookUrl": webhookurl.redact(rt.record.webhook_url),
            "webhookEvents": rt.record.webhook_events, "lastError": rt.last_error, "engine": rt.record.engine,
            "defaultCountryCode": rt.record.default_country_code,
            "typingIndicatorEnabled": rt.record.typing_indicator_enabled, "applyTypingTo": rt.record.apply_typing_to}


def _dump(body: Any) -> dict[str, Any]:
    """A request model as a plain dict, after checking every string in it is valid Unicode."""
    data: dict[str, Any] = body.model_dump(exclude_unset=True) if body is not None else {}
    check_text(data, "")
    return data


async def body_of(request: Request) -> dict[str, Any]:
    """The JSON object body (empty body: ``{}``); InvalidInput for malformed JSON or another type."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    check_text(data, "")
    return data


def check_text(value: Any, path: str) -> None:
    """Raise InvalidInput naming the field when a string holds a lone surrogate or a NUL.

    JSON can carry ``"\\ud800"``, which Python decodes into a string that cannot be encoded as
    UTF-8: it could be neither hashed, stored nor sent, so it is refused at the edge.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{path or 'body'} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{path or 'body'} contains invalid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, path or "body")
            check_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_text(item, f"{path}[{i}]")


def _limits(data: dict[str, Any]) -> dict[str, Any] | None:
    """The body's ``limits`` object by column name (None when absent); InvalidInput naming the field."""
    limits = data.get("limits")
    if limits is None:
        return None
    if not isinstance(limits, dict):
        raise InvalidInput("limits must be an object with perMinute, perHour and/or intervalMs")
    names = {"perMinute": "limit_per_minute", "perHour": "limit_per_hour", "intervalMs": "send_interval_ms"}
    unknown = set(limits) - set(names)
    if unknown:
        raise InvalidInput(f"limits has unknown keys {sorted(unknown)}; known: perMinute, perHour, intervalMs")
    return {names[k]: v for k, v in limits.items()}


@router.get("/instances", summary="List instances (a bare JSON array, as wa-hub always answered)")
async def list_instances(request: Request) -> JSONResponse:
    return JSONResponse([instance_brief(rt) for rt in hub_of(request).instances.values()])


@router.post("/instances", summary="Create an instance; for an existing id, reconnect or relink it (200)")
async def create_instance(request: Request, body: schemas.CreateInstance | None = None) -> JSONResponse:
    """Create; with no body at all (the WaAPI SDK) the id is generated.

    As the existing wa-hub: a ``webhook`` object without ``url`` is 400; POSTing an id that exists
    with the same name answers 200 and reconnects (``disconnected``) or relinks (``logged_out``/``error``/``stopped``:
    a hard restart that shows a new QR) instead of 409; a ready instance is left alone. Another name
    that sanitises to a taken id stays 409: one shop must never take over another's instance.
    """
    hub = hub_of(request)
    data = _dump(body)
    webhook = data.get("webhook") or {}
    if body is None:
        data["name"] = "instance-" + uuid.uuid4().hex[:12]
    if not isinstance(data.get("name"), str):
        raise InvalidInput("name is required (a string)")
    if "webhook" in data and not webhook.get("url"):
        raise InvalidInput("Webhook URL is required (webhook.url)")
    limits = _limits(data)  # checked on a re-create too: a bad field is a 400 either way
    existing = hub.instances.get(chatid.instance_id_from_name(data["name"]))
    if existing is not None and existing.record.name == data["name"].strip():
        if data.get("engine") is not None and hub.engine_choice(data["engine"]) != existing.record.engine:
            raise Conflict(f"instance {existing.id} runs the {existing.record.engine} engine; delete it to change "
                           "its engine")
        if data.get("cloud") is not None:  # renewed Cloud API credentials, read at the engine's next start
            await hub.replace_cloud_credentials(existing.id, data["cloud"])
        if limits is not None:  # given limits replace the stored ones, as webhook and settings do
            await hub.update_instance(existing.id, limits=limits)
        return await legacy.recreate(hub, existing, webhook, sendsettings.pick(data))
    rt = await hub.create_instance(data["name"], webhook.get("url"), webhook.get("events"), webhook.get("secret"),
                                   sendsettings.pick(data), engine=data.get("engine"), cloud=data.get("cloud"),
                                   limits=limits)
    return ok({"instance": instance_brief(rt)})


@router.get("/instances/{instance_id}", summary="One instance")
async def get_instance(request: Request, instance_id: str) -> JSONResponse:
    return ok({"instance": instance_brief(hub_of(request).get(instance_id))})


@router.put("/instances/{instance_id}", summary="Update name, webhook or per-instance limits")
async def update_instance(request: Request, instance_id: str, body: schemas.UpdateInstance) -> JSONResponse:
    data = _dump(body)
    webhook = data.get("webhook") or {}
    kwargs: dict[str, Any] = {"name": data.get("name")}
    if "url" in webhook:
        kwargs["webhook_url"] = webhook["url"]
    if "events" in webhook:
        kwargs["events"] = webhook["events"] if webhook["events"] is not None else []
    if "secret" in webhook:
        kwargs["webhook_secret"] = webhook["secret"]
    if data.get("limits") is not None:
        kwargs["limits"] = _limits(data)
    kwargs["settings"] = sendsettings.pick(data)  # defaultCountryCode, typingIndicatorEnabled, applyTypingTo
    rt = await hub_of(request).update_instance(instance_id, **kwargs)
    return ok({"instance": instance_brief(rt)})


@router.delete("/instances/{instance_id}", summary="Delete: log out, purge the session and every record")
async def delete_instance(request: Request, instance_id: str) -> JSONResponse:
    """Idempotent as in the existing wa-hub: an unknown id answers 200 with ``deleted: false``."""
    return ok(await legacy.delete(hub_of(request), instance_id))


@router.get("/instances/{instance_id}/client/qr", summary="Current QR code as base64 PNG")
async def get_qr(request: Request, instance_id: str) -> Response:
    hub = hub_of(request)
    try:
        rt = hub.run_here(instance_id)  # the QR lives on the node running the instance
    except Conflict as refusal:  # several nodes: that node answers (or 409 names it)
        from wahub.api.nodes import from_owner

        return await from_owner(request, refusal)
    if rt.qr is None:
        if rt.state == lifecycle.State.READY:
            return ok({"qrCode": {"data": {"qr_code": None}}, "instanceStatus": "ready",
                       "message": "instance is linked; there is no QR code to scan"})
        if rt.state in lifecycle.TERMINAL:
            raise Conflict(f"instance is {rt.state.value}: no QR code will come until it is restarted "
                           "(POST /instances/{id}/restart)", instanceState=rt.state.value)
        raise NotFound("QR code not available yet. Please wait a few seconds.", instanceState=rt.state.value)
    return ok({"qrCode": {"data": {"qr_code": presenters.qr_png_b64(rt.qr), "qr_string": rt.qr}},
               "instanceStatus": "qr"})


@router.get("/instances/{instance_id}/client/status", summary="Connection status (WaAPI shape)")
async def client_status(request: Request, instance_id: str) -> JSONResponse:
    hub = hub_of(request)
    rt = hub.get(instance_id)
    stats = await hub.outbox.queue_stats(rt.id)
    data = {"phoneNumber": rt.phone, "formattedNumber": rt.phone} if rt.phone else {}
    debug = legacy.debug_fields(hub, await presenters.status(hub, rt.id))
    return ok({"clientStatus": {
        "instanceStatus": lifecycle.external_status(rt.state, rt.qr is not None), "instanceId": rt.id,
        "data": data, "state": rt.state.value, "since": rt.state_since, "reason": rt.state_reason,
        "queueDepth": stats.depth, "lastError": rt.last_error, **debug}})


@router.get("/instances/{instance_id}/client/me", summary="The linked account")
async def client_me(request: Request, instance_id: str) -> JSONResponse:
    rt = hub_of(request).get(instance_id)
    if rt.state != lifecycle.State.READY:
        raise InvalidInput(f"Instance is not connected. Current state: {rt.state.value}",
                           instanceState=rt.state.value)
    return ok({"me": {"data": {"displayName": rt.push_name, "contactId": rt.phone, "formattedNumber": rt.phone,
                               "id": f"{rt.phone}@c.us" if rt.phone else None, "profilePicUrl": None}}})


def _queued_message(state: lifecycle.State) -> str:
    if state == lifecycle.State.READY:
        return "Message queued. It is sent in order, within the instance's pacing and rate limits."
    if state in lifecycle.TERMINAL:
        return f"Message queued, but the instance is {state.value}: it is sent only after an operator acts."
    return "Message queued. Will be sent when instance becomes ready."


async def _enqueue(request: Request, instance_id: str, kind: ItemKind, data: dict[str, Any],
                   header_key: str | None) -> JSONResponse:
    hub = hub_of(request)
    result = await hub.outbox.enqueue(instance_id, kind, data, header_key=header_key,
                                      retry=retry_asked(request, data))
    return enqueued(hub, instance_id, result)


def retry_asked(request: Request, data: dict[str, Any]) -> bool:
    """``retry`` from the body or the query: queue a failed keyed item again. Raises InvalidInput."""
    return retry_of(request.query_params, data)


def retry_of(query: Mapping[str, str], data: dict[str, Any]) -> bool:
    """:func:`retry_asked` given the query parameters. Raises InvalidInput."""
    if data.get("retry") is not None and not isinstance(data["retry"], bool):
        raise InvalidInput("retry must be true or false")
    return data.get("retry") is True or query.get("retry") in ("1", "true")


def enqueued(hub: Hub, instance_id: str, result: EnqueueResult) -> JSONResponse:
    """The answer to an enqueue: 202 queued, 200 with ``messageId`` for a replay of a sent item."""
    rt = hub.get(instance_id)
    item = result.item
    state = rt.state.value
    common: dict[str, Any] = {"queueId": item.queue_id, "idempotencyKey": item.idempotency_key,
                              "replay": result.replay, "instanceState": state, "queueDepth": result.queue_depth}
    if rt.state in lifecycle.TERMINAL:
        common["warning"] = f"instance is {state}: nothing is sent until an operator acts"
    if item.status == ItemStatus.SENT:
        payload: dict[str, Any] = {"status": "success", "messageId": item.message_id, **common,
                                   "message": "Message already sent (same idempotency key)"}
        code = 200
    else:
        payload = {"status": "success", "queued": True, **common, "itemStatus": item.status.value,
                   "message": _queued_message(rt.state)}
        code = 202
    if hub.settings.waapi_envelope:  # the official WaAPI SDK reads the answer under ``data``
        return JSONResponse({"status": "success", "data": payload}, status_code=code)
    return JSONResponse(payload, status_code=code)  # the existing wa-hub: every field at the top level


@router.post("/instances/{instance_id}/client/action/send-message", status_code=202,
             summary="Enqueue a text message (202 queued; 200 with messageId for a replay of a sent one)")
async def send_message(request: Request, instance_id: str, body: schemas.SendMessage,
                       idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> JSONResponse:
    return await _enqueue(request, instance_id, ItemKind.TEXT, _dump(body), idempotency_key)


@router.post("/instances/{instance_id}/client/action/create-poll", status_code=202,
             summary="Enqueue a poll (2-12 distinct options)")
async def create_poll(request: Request, instance_id: str, body: schemas.CreatePoll,
                      idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> JSONResponse:
    return await _enqueue(request, instance_id, ItemKind.POLL, _dump(body), idempotency_key)


@router.post("/instances/{instance_id}/client/action/logout",
             summary="Log out and delete the instance (as the existing wa-hub); WAAPI_ENVELOPE=true keeps it")
async def logout(request: Request, instance_id: str) -> JSONResponse:
    """End the WhatsApp session.

    Default (the existing wa-hub): the instance is deleted like ``DELETE /instances/{id}``, so an old
    client's logout → create → scan works unchanged; open outbox items are reported as
    ``droppedFromOutbound``. With ``WAAPI_ENVELOPE=true`` (WaAPI semantics) the instance and its
    queue stay, in ``logged_out``.
    """
    hub = hub_of(request)
    if not hub.settings.waapi_envelope:
        hub.get(instance_id)  # 404 for an unknown id, as before
        result = await legacy.delete(hub, instance_id)
        result["message"] = f"Instance {instance_id} logged out and destroyed successfully"
        return ok(result)
    rt = await hub.logout(instance_id)
    return ok({"message": f"Instance {rt.id} logged out", "data": {"status": "success",
                                                                    "instanceStatus": rt.state.value}})


@router.post("/instances/{instance_id}/client/action/reboot", summary="Soft restart (counts against the budget)")
async def reboot(request: Request, instance_id: str) -> JSONResponse:
    rt = await hub_of(request).restart(instance_id, "soft")
    return ok({"message": "Restart initiated (type: soft)", "data": {"status": "success"}, "instanceId": rt.id})


@router.post("/instances/{instance_id}/client/action/request-pairing-code",
             summary="Pairing code for phone-number login")
async def request_pairing_code(request: Request, instance_id: str, body: schemas.PairingCode) -> JSONResponse:
    data = _dump(body)
    phone = data.get("phoneNumber")
    if not isinstance(phone, str):
        raise InvalidInput("phoneNumber is required (a string, e.g. \"201000000001\")")
    code = await hub_of(request).request_pairing_code(instance_id, phone)
    return ok({"data": {"status": "success", "pairingCode": code}})


@router.post("/instances/{instance_id}/client/action/is-registered-user",
             summary="Whether a number has WhatsApp (instance must be ready)")
async def is_registered_user(request: Request, instance_id: str, body: schemas.RegisteredUser) -> JSONResponse:
    data = _dump(body)
    registered = await hub_of(request).is_registered(instance_id, data.get("contactId"))
    return ok({"data": {"status": "success", "isRegisteredUser": registered}})


@router.post("/instances/{instance_id}/client/action/get-poll-votes",
             summary="Latest vote of every voter on a poll wa-hub sent")
async def get_poll_votes(request: Request, instance_id: str, body: schemas.PollVotes) -> JSONResponse:
    from wahub.api.native import poll_votes_payload

    data = _dump(body)
    if not isinstance(data.get("messageId"), str):
        raise InvalidInput("messageId is required")
    payload = await poll_votes_payload(hub_of(request), instance_id, data["messageId"])
    return ok({"data": {"status": "success", **payload}})
