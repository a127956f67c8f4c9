"""The public webhook route Meta calls for a Cloud API instance (no API key: Meta signs instead).

``GET  /cloud/{instance_id}/webhook`` answers the subscription handshake (``hub.challenge``);
``POST /cloud/{instance_id}/webhook`` takes message and status notifications. The body is capped
before it is read whole (413 over ``max_body_bytes``); the signature check, parsing and hand-over
are the port's (the engine's receiver), so this module stays HTTP only. Refusals: 403 forged
signature or wrong verify token, 404 not a cloud instance, 413 body too large.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from wahub.api.errors import error_response

DEFAULT_MAX_BODY_BYTES = 512 * 1024


class CloudWebhookPort(Protocol):
    """What the route needs from the engine side (implemented by ``engines.cloud.receiver``)."""

    async def challenge(self, instance_id: str, mode: str | None, token: str | None,
                        hub_challenge: str | None) -> str:
        """The challenge to echo; raises an ``ApiError`` (403 / 404) to refuse."""
        ...

    async def receive(self, instance_id: str, body: bytes, signature: str | None) -> int:
        """Verify and deliver one notification; returns the number of events. Raises ``ApiError`` to refuse."""
        ...


class _TooLarge(Exception):
    pass


def router(port: CloudWebhookPort, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> APIRouter:
    """The webhook routes, handing calls to ``port``."""
    routes = APIRouter(tags=["cloud"])

    @routes.get("/cloud/{instance_id}/webhook", response_class=PlainTextResponse,
                summary="Meta's webhook verification handshake")
    async def verify(instance_id: str, request: Request) -> Response:
        q = request.query_params
        answer = await port.challenge(instance_id, q.get("hub.mode"), q.get("hub.verify_token"),
                                      q.get("hub.challenge"))
        return PlainTextResponse(answer)

    @routes.post("/cloud/{instance_id}/webhook", summary="Meta's message and status notifications")
    async def receive(instance_id: str, request: Request) -> Response:
        try:
            body = await _capped_body(request, max_body_bytes)
        except _TooLarge:
            return error_response(413, f"webhook body larger than {max_body_bytes} bytes")
        events = await port.receive(instance_id, body, request.headers.get("x-hub-signature-256"))
        return JSONResponse({"status": "success", "events": events})

    return routes


async def _capped_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
