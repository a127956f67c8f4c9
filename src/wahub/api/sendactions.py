"""WaAPI send actions besides text and polls: ``POST /instances/{id}/client/action/<name>``.

Those that put something in a chat are enqueued and answered like ``send-message`` (202 queued,
200 with ``messageId`` for a replay of a sent one); ``send-seen``, typing and presence go to the
engine at once; ``download-media`` answers the bytes (JSON base64 by default, the raw file with
``Accept: application/octet-stream``) and keeps nothing.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from wahub.api import sendschemas as s
from wahub.api.auth import require_key
from wahub.api.waapi import _dump, enqueued, hub_of, retry_asked
from wahub.domain.outbox import ItemKind

router = APIRouter(dependencies=[Depends(require_key)], tags=["WaAPI-compatible"])
ACTION = "/instances/{instance_id}/client/action/"


async def _queue(request: Request, instance_id: str, kind: ItemKind, body: Any, key: str | None) -> JSONResponse:
    hub = hub_of(request)
    data = _dump(body)
    result = await hub.send_actions.enqueue(instance_id, kind, data, header_key=key, retry=retry_asked(request, data))
    return enqueued(hub, instance_id, result)


def _done(request: Request, payload: dict[str, Any]) -> JSONResponse:
    """A direct action's success: WaAPI's ``{"status", "data"}`` (the fields also at the top level by default)."""
    data = {"status": "success", **payload}
    if hub_of(request).settings.waapi_envelope:
        return JSONResponse({"status": "success", "data": data})
    return JSONResponse({**data, "data": data})


_KEY = Header(None, alias="Idempotency-Key")


@router.post(ACTION + "send-media", status_code=202, summary="Enqueue an image, video, audio, voice note or document")
async def send_media(request: Request, instance_id: str, body: s.SendMedia,
                     idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.MEDIA, body, idempotency_key)


@router.post(ACTION + "send-location", status_code=202, summary="Enqueue a location pin")
async def send_location(request: Request, instance_id: str, body: s.SendLocation,
                        idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.LOCATION, body, idempotency_key)


@router.post(ACTION + "send-vcard", status_code=202, summary="Enqueue a contact card")
async def send_vcard(request: Request, instance_id: str, body: s.SendVCard,
                     idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.VCARD, body, idempotency_key)


@router.post(ACTION + "react-to-message", status_code=202, summary='Enqueue a reaction ("" removes it)')
async def react_to_message(request: Request, instance_id: str, body: s.React,
                           idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.REACTION, body, idempotency_key)


@router.post(ACTION + "edit-message", status_code=202, summary="Enqueue an edit of a text this account sent")
async def edit_message(request: Request, instance_id: str, body: s.EditMessage,
                       idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.EDIT, body, idempotency_key)


@router.post(ACTION + "delete-message-by-id", status_code=202, summary="Enqueue a delete for everyone")
async def delete_message_by_id(request: Request, instance_id: str, body: s.DeleteMessage,
                               idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.REVOKE, body, idempotency_key)


@router.post(ACTION + "forward-message", status_code=202, summary="Enqueue a forward of a message this hub sent")
async def forward_message(request: Request, instance_id: str, body: s.ForwardMessage,
                          idempotency_key: str | None = _KEY) -> JSONResponse:
    return await _queue(request, instance_id, ItemKind.FORWARD, body, idempotency_key)


@router.post(ACTION + "send-seen", summary="Mark a chat read (blue ticks), at once")
async def send_seen(request: Request, instance_id: str, body: s.ChatOnly) -> JSONResponse:
    chat = await hub_of(request).send_actions.seen(instance_id, _dump(body).get("chatId"))
    return _done(request, {"chatId": chat, "seen": True})


async def _presence(request: Request, instance_id: str, chat: Any, state: str) -> JSONResponse:
    chat_id = await hub_of(request).send_actions.presence(instance_id, chat, state)
    return _done(request, {"chatId": chat_id, "presence": state})


@router.post(ACTION + "send-typing", summary='Show "typing…" in a chat, at once')
async def send_typing(request: Request, instance_id: str, body: s.ChatOnly) -> JSONResponse:
    return await _presence(request, instance_id, _dump(body).get("chatId"), "typing")


@router.post(ACTION + "send-stop-typing", summary='Stop "typing…" in a chat')
async def send_stop_typing(request: Request, instance_id: str, body: s.ChatOnly) -> JSONResponse:
    return await _presence(request, instance_id, _dump(body).get("chatId"), "paused")


@router.post(ACTION + "send-presence-available", summary="Show the account online")
async def send_presence_available(request: Request, instance_id: str) -> JSONResponse:
    return await _presence(request, instance_id, None, "available")


@router.post(ACTION + "send-presence-unavailable", summary="Show the account offline")
async def send_presence_unavailable(request: Request, instance_id: str) -> JSONResponse:
    return await _presence(request, instance_id, None, "unavailable")


@router.post(ACTION + "download-media", summary="The media of a received message (size-capped, never stored)")
async def download_media(request: Request, instance_id: str, body: s.DownloadMedia) -> Response:
    """JSON `{media: {mimetype, data (base64), filename, filesize}}`; raw with `Accept: application/octet-stream`."""
    data = _dump(body)
    got = await hub_of(request).send_actions.download(instance_id, data.get("messageId"), data.get("chatId"))
    if "application/octet-stream" in request.headers.get("accept", ""):
        headers = {"Content-Disposition": f'attachment; filename="{(got.filename or "media").replace(chr(34), "")}"',
                   "Cache-Control": "no-store"}
        return Response(got.data, media_type=got.mimetype, headers=headers)
    return _done(request, {"media": {"mimetype": got.mimetype, "data": base64.b64encode(got.data).decode("ascii"),
                                     "filename": got.filename, "filesize": len(got.data)}})
