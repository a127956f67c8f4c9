"""The guard in front of the whole web app: request ids, the API key before the body, body limit, HTTP metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wahub.api.errors import error_body, unexpected_response
from wahub.domain.brake import FailureBrake
from wahub.domain.randomid import random_hex
from wahub.edge import auth, brakes
from wahub.edge.asgi import replay
from wahub.runtime.hub import Hub

log = structlog.get_logger("wahub.http")
_WANTED = frozenset((b"x-request-id", b"content-length", b"transfer-encoding", b"authorization", b"x-api-key"))


class Guard:
    """Plain ASGI middleware (no per-request task group): request ids, body limit, HTTP metrics.

    * The API key is checked here, before any of the body is read (401 none, 403 wrong), except on the public
      paths of :data:`wahub.edge.auth.PUBLIC_PREFIXES`; the routes check it again.
    * ``x-request-id``: taken from the request or made up, bound to every log line of the request
      and echoed in the response.
    * Bodies over ``MAX_BODY_BYTES`` get 413, by ``content-length`` or, for chunked bodies, by
      counting what arrives before the app sees any of it.
    * ``wahub_http_requests_total`` / ``wahub_http_request_seconds`` by method and route template.
    """

    def __init__(self, app: ASGIApp, hub: Hub, brake: FailureBrake | None = None) -> None:
        self.app = app
        self.hub = hub
        self.brake = brake or FailureBrake()
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or auth.GUARDED in scope:  # not HTTP, or guarded already in front of the app
            await self.app(scope, receive, send)
            return
        headers = _wanted_headers(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or random_hex(8)
        path: str = scope.get("path", "")
        limit = self.hub.settings.max_body_bytes
        if path.startswith("/cloud/"):  # Meta's webhook calls: the route caps them itself
            limit = max(limit, self.hub.settings.cloud_webhook_max_bytes)
        elif path.endswith("/client/action/send-media"):  # base64 files: MEDIA_MAX_BYTES
            limit = max(limit, self.hub.settings.media_max_bytes * 4 // 3 + 64 * 1024)
        started = time.perf_counter()
        status = [500, False]  # the status answered, whether the answer has started
        length = headers.get(b"content-length")
        too_big = length is not None and length.isdigit() and int(length) > limit
        public = auth.is_public(path)
        refused = None if public else auth.refusal(self.hub.settings.api_key, auth.key_from_headers(headers))
        wait_s = 0 if refused is None and public or refused == auth.MISSING else \
            brakes.braked(self.brake, scope, refused, self.hub.clock.now_ms())
        if refused is None and not too_big and length is None and b"chunked" in headers.get(b"transfer-encoding",
                                                                                              b""):
            body, too_big = await _read_capped(receive, limit)
            receive = replay(body)
        request_id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0], status[1] = message["status"], True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if wait_s:  # too many wrong keys from this client: not even compared
                await _json(send_with_id, 429, error_body(429, brakes.BRAKED), retry_after_s=wait_s)
            elif refused is not None:  # before a single byte of the body is read
                code = 403 if refused == auth.WRONG else 401
                await _json(send_with_id, code, error_body(code, refused))
            elif too_big:
                await _json(send_with_id, 413, error_body(
                    413, f"request body larger than MAX_BODY_BYTES={limit}"))
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            if not status[1]:  # as the server-error middleware answers (it sits behind this guard on the fast path)
                await unexpected_response(Request(scope).url.path)(scope, receive, send_with_id)
            raise
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            self._observe(scope.get("method", "GET"), _route_template(scope), status[0], time.perf_counter() - started)

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count the request and its latency (the labelled series are looked up once, then kept)."""
        series = self._series.get((method, route, status))
        if series is None:
            metrics = self.hub.metrics
            series = (metrics.http_requests.labels(method, route, str(status)),
                      metrics.http_latency.labels(method, route))
            self._series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)


def _wanted_headers(raw: Any) -> dict[bytes, bytes]:
    """The headers the guard reads from the raw ASGI list (the last of each, as ``dict()`` of the list keeps)."""
    return {key: value for key, value in raw if key in _WANTED}


async def _read_capped(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), False


async def _json(send: Send, status: int, payload: dict[str, Any], retry_after_s: int = 0) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after_s:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    """The template of the route that served the request (``/instances/{instance_id}``), never the raw path.

    Read after the request ran: the router records the matched route in the scope (FastAPI resolves
    included routers lazily, so matching against ``app.router.routes`` beforehand finds nothing).
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"
