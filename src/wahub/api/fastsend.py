"""``send-message`` and ``create-poll`` answered without FastAPI's router: the enqueue hot path.

Why: an enqueue is a few hundred µs of wa-hub's own work, and FastAPI's route matching across
every router plus its dependency and parameter solving cost as much again (docs/PERFORMANCE.md).
:class:`FastEnqueue` sits inside the guard (which has already checked the API key, the body limit
and bound the request id) and answers these two routes itself, with the same code as the FastAPI
routes: the body is validated by the same request model, the runtime is called the same way and
the answer or refusal is built by the same functions, so every answer is byte for byte the
route's. The FastAPI routes stay registered: they document the API (OpenAPI) and answer every
request this path does not take — a body that is not a JSON object (FastAPI words those refusals),
no or another content type than ``application/json``, an application root path.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from wahub.api import errors, schemas, waapi
from wahub.domain.outbox import ItemKind
from wahub.edge.asgi import replay
from wahub.edge.auth import GUARDED
from wahub.runtime.hub import Hub

PREFIX = "/instances/"
ROUTES: dict[str, tuple[ItemKind, type[BaseModel]]] = {
    "/client/action/send-message": (ItemKind.TEXT, schemas.SendMessage),
    "/client/action/create-poll": (ItemKind.POLL, schemas.CreatePoll),
}
_JSON_TYPES = (b"application/json",)


class FastEnqueue:
    """ASGI middleware answering ``POST /instances/{id}/client/action/send-message`` and ``create-poll``.

    Everything else goes to ``app`` untouched. ``routes`` maps each action suffix to the FastAPI
    route it stands for, recorded in the scope as the router would (the guard's metrics read the
    route template from there).
    """

    def __init__(self, app: ASGIApp, hub: Hub, routes: dict[str, Any]) -> None:
        self.app = app
        self.hub = hub
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = _match(scope) if scope["type"] == "http" and GUARDED not in scope else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        instance_id, suffix = matched
        body = await _body(receive)
        if body is None:  # the client left before its body arrived: nobody to answer
            return
        data = _json_object(scope, body, ROUTES[suffix][1])
        if data is None:  # FastAPI words the refusal of a body it cannot take
            await self.app(scope, replay(body), send)
            return
        scope["route"] = self.routes[suffix]
        try:
            response = await self._enqueue(scope, instance_id, ROUTES[suffix][0], data)
        except Exception as exc:  # noqa: BLE001 - every refusal is answered as the routes answer it
            refusal = errors.refusal_response(exc)
            if refusal is None:
                await errors.unexpected_response(scope["path"])(scope, receive, send)
                raise  # as FastAPI's server-error middleware does: the server logs it too
            response = refusal
        await response(scope, receive, send)

    async def _enqueue(self, scope: Scope, instance_id: str, kind: ItemKind, data: dict[str, Any]) -> Response:
        waapi.check_text(data, "")
        header_key = _header(scope, b"idempotency-key")
        query = QueryParams(scope["query_string"]) if scope.get("query_string") else QueryParams()
        result = await self.hub.outbox.enqueue(instance_id, kind, data, header_key=header_key,
                                               retry=waapi.retry_of(query, data))
        return waapi.enqueued(self.hub, instance_id, result)


def matches(scope: Scope) -> bool:
    """Whether ``scope`` is a request this path answers (or declines to FastAPI for its body)."""
    return _match(scope) is not None


def _match(scope: Scope) -> tuple[str, str] | None:
    """``(instance_id, action suffix)`` of a POST this path answers, else None (as Starlette matches it)."""
    if scope.get("method") != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    slash = path.find("/", len(PREFIX))
    if slash <= len(PREFIX):
        return None
    suffix = path[slash:]
    if suffix not in ROUTES:
        return None
    return path[len(PREFIX):slash], suffix


async def _body(receive: Receive) -> bytes | None:
    """The whole request body (None when the client disconnected first)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _json_object(scope: Scope, body: bytes, model: type[BaseModel]) -> dict[str, Any] | None:
    """The body as the route's model dumps it, or None when FastAPI would not take it as a JSON object."""
    if not body:
        return None
    content_type = _header(scope, b"content-type")  # FastAPI reads a body as JSON only when it says so
    if content_type is None or content_type.split(";", 1)[0].strip().lower().encode() not in _JSON_TYPES:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    try:
        data: dict[str, Any] = model.model_validate(parsed).model_dump(exclude_unset=True)
    except ValidationError:
        return None
    return data


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), decoded as Starlette decodes it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
